"""Tests for bridge.discovery: announce an engine and find it again, on loopback only."""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from bridge import PROTOCOL_VERSION, DiscoveredEngine, EngineAdvertiser, browse_engines
from bridge.discovery import _instance_label, advertise_engine, engine_properties, load_text

pytestmark = pytest.mark.timeout(20)

LOOPBACK = "127.0.0.1"


def loopback_multicast_problem() -> str | None:
    """Why multicast on loopback cannot work here, or None if a datagram makes the round trip.

    Sandboxes often forbid joining groups or silently drop multicast; mDNS needs both to work.
    """
    group = "224.0.0.251"  # the mDNS group; a random port keeps this probe off real mDNS traffic
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as receiver, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as sender:
            receiver.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            receiver.bind(("", 0))
            port = receiver.getsockname()[1]
            membership = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(LOOPBACK))
            receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            receiver.settimeout(1.0)
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            sender.sendto(b"swapline-probe", (group, port))
            data = receiver.recv(64)
    except TimeoutError:
        return "multicast datagrams on 127.0.0.1 are not delivered in this environment"
    except OSError as exc:
        return f"multicast on 127.0.0.1 is not available in this environment: {exc}"
    return None if data == b"swapline-probe" else "multicast probe came back altered"


@pytest.fixture(scope="module")
def multicast():
    problem = loopback_multicast_problem()
    if problem is not None:
        pytest.skip(problem)


def test_advertised_engine_is_found_on_loopback(multicast):
    # The pid keeps two test runs on one machine from claiming the same name.
    advertiser = EngineAdvertiser(f"studio.gpu box {os.getpid()}", 47123,
                                  {"version": "0.1.0", "device": "cuda"}, addresses=[LOOPBACK])
    advertiser.start()
    try:
        found: list[DiscoveredEngine] = []
        deadline = time.monotonic() + 8.0
        while not found and time.monotonic() < deadline:
            found = [engine for engine in browse_engines(2.0, interfaces=[LOOPBACK])
                     if engine.name.endswith(str(os.getpid()))]
    finally:
        advertiser.stop()
    assert len(found) == 1
    engine = found[0]
    assert engine.name == f"studio-gpu box {os.getpid()}"
    assert (engine.host, engine.port) == (LOOPBACK, 47123)
    assert engine.properties == {"protocol": str(PROTOCOL_VERSION), "version": "0.1.0", "device": "cuda"}


def browse_for(suffix: str, wanted=lambda engine: True, attempts: int = 4) -> DiscoveredEngine | None:
    """The engine whose name ends with `suffix` once `wanted(engine)` holds, from fresh browses."""
    for _ in range(attempts):
        for engine in browse_engines(2.0, interfaces=[LOOPBACK]):
            if engine.name.endswith(suffix) and wanted(engine):
                return engine
    return None


def test_update_changes_the_load_a_new_browse_sees(multicast):
    info = {"name": f"swapline@box.{os.getpid()}", "version": "0.2.0", "device": "NVIDIA H100 (80 GiB)",
            "tls": True, "workspace": "/secret/path"}
    advertiser = EngineAdvertiser(info["name"], 47124, engine_properties(info, {"running": 1, "queued": 2}),
                                  addresses=[LOOPBACK])
    advertiser.start()
    try:
        first = browse_for(f"{os.getpid()}")
        assert advertiser.update({"load": "0/0"}) is True
        assert advertiser.update({"load": "0/0"}) is False  # unchanged: nothing re-announced
        second = browse_for(f"{os.getpid()}", lambda engine: engine.load == (0, 0))
    finally:
        advertiser.stop()
    assert first is not None and second is not None
    assert first.title == info["name"]  # the instance label lost its dot, the TXT name did not
    assert (first.device, first.version, first.tls, first.protocol) == (
        "NVIDIA H100 (80 GiB)", "0.2.0", True, PROTOCOL_VERSION)
    assert first.load == (1, 2)
    assert second.load == (0, 0) and second.device == first.device
    assert "workspace" not in second.properties  # only what a LAN peer needs to choose an engine


def test_advertise_engine_follows_the_load(multicast):
    load = {"running": 0, "queued": 0}
    info = {"name": f"follow {os.getpid()}", "version": "0.2.0", "device": "CPU: x86_64, 2 threads", "tls": False}
    advertiser = advertise_engine(info, 47125, lambda: dict(load), interval=0.2, addresses=[LOOPBACK])
    try:
        first = browse_for(f"follow {os.getpid()}")
        load.update(running=1, queued=3)
        later = browse_for(f"follow {os.getpid()}", lambda engine: engine.load == (1, 3))
    finally:
        advertiser.stop()
    assert first is not None and first.load == (0, 0) and first.tls is False
    assert later is not None and later.load == (1, 3)
    assert advertiser._follower is None  # stop() ended the load thread


def test_update_before_start_only_changes_what_start_announces():
    advertiser = EngineAdvertiser("idle", 1, {"load": "0/0"})
    assert advertiser.update({"load": "2/0"}) is False
    assert advertiser.properties["load"] == "2/0"


def test_engine_properties_and_accessors_tolerate_missing_keys():
    assert load_text({"running": 2, "queued": 5}) == "2/5"
    assert engine_properties({"name": "n", "device": "d" * 300})["device"] == "d" * 200
    assert engine_properties({"name": "n"})["tls"] == "0"
    bare = DiscoveredEngine("old", "10.0.0.2", 5000, {"load": "x/1", "protocol": "v"})
    assert (bare.title, bare.device, bare.version, bare.load, bare.tls, bare.protocol) == (
        "old", "", "", None, False, None)


def test_accessors_read_non_ascii_digits_as_missing():
    # "²".isdigit() is true but int("²") fails: a hostile TXT record must not break the engine list
    odd = DiscoveredEngine("odd", "10.0.0.2", 5000, {"load": "1/²", "protocol": "²"})
    assert (odd.load, odd.protocol) == (None, None)
    assert DiscoveredEngine("odd", "10.0.0.2", 5000, {"load": "٣/1"}).load is None


def test_instance_names_are_made_into_one_dns_label():
    assert _instance_label("a.b.c") == "a-b-c"
    assert _instance_label("   ") == "swapline"
    assert len(_instance_label("é" * 100).encode()) <= 63


def test_discovered_engine_is_an_immutable_value():
    engine = DiscoveredEngine("e", "10.0.0.2", 5000, {"protocol": "1"})
    with pytest.raises(AttributeError):
        engine.port = 1  # type: ignore[misc]
    assert engine == DiscoveredEngine("e", "10.0.0.2", 5000, {"protocol": "1"})


def test_stopping_an_advertiser_that_never_started_is_harmless():
    EngineAdvertiser("idle", 1).stop()


class _FakeClock:
    """Stands in for the time module of bridge.discovery: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_names_that_never_resolve_cannot_stretch_a_search_past_its_budget(monkeypatch):
    # A LAN peer announcing many names whose records never come: each resolve waits its whole timeout.
    import zeroconf

    from bridge import discovery

    clock = _FakeClock()
    asked: list[int] = []

    class Zeroconf:
        def __init__(self, interfaces=None) -> None:
            pass

        def get_service_info(self, service_type: str, name: str, timeout: int):
            asked.append(timeout)
            clock.sleep(timeout / 1000)
            return None

        def close(self) -> None:
            pass

    class ServiceBrowser:
        def __init__(self, zc, service_type: str, handlers) -> None:
            for n in range(1000):
                handlers[0](zeroconf=zc, service_type=service_type, name=f"fake{n}.{service_type}",
                            state_change=zeroconf.ServiceStateChange.Added)

        def cancel(self) -> None:
            pass

    class ServiceInfo:
        def __init__(self, service_type: str, name: str) -> None:
            pass

        def load_from_cache(self, zc) -> bool:
            return False

    monkeypatch.setattr(discovery, "time", clock)
    monkeypatch.setattr(zeroconf, "Zeroconf", Zeroconf)
    monkeypatch.setattr(zeroconf, "ServiceBrowser", ServiceBrowser)
    monkeypatch.setattr(zeroconf, "ServiceInfo", ServiceInfo)
    assert browse_engines(2.0) == []
    assert clock.now <= 2.0 + discovery._RESOLVE_BUDGET + 0.2
    assert asked and all(t > 0 for t in asked)
