"""Discovery layer of the bridge: announce and find engines on the LAN with mDNS/DNS-SD.

Opt-in: nothing here runs unless called, and zeroconf is imported only then, so a machine that only
ever talks to a local engine never touches the network or needs zeroconf to import the bridge.
Honouring Blender's online-access setting is the add-on's job, before it calls browse_engines().
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .protocol import PROTOCOL_VERSION, SERVICE_TYPE, BridgeError

__all__ = ["DiscoveredEngine", "EngineAdvertiser", "advertise_engine", "browse_engines", "engine_properties",
           "load_text"]

_RESOLVE_BUDGET = 1.0  # seconds for resolving every name found, after the browse period
_MAX_VALUE = 200  # a TXT string holds 255 bytes, key and "=" included
LOAD_INTERVAL = 5.0  # seconds between load checks of an advertised engine


@dataclass(frozen=True)
class DiscoveredEngine:
    """One engine seen on the LAN; connect with BridgeClient(host, port, token).

    The accessors read the TXT record (see engine_properties); an engine that left a key out (an
    older one) reads as empty, None or False, never as an error: the record is the peer's word.
    """

    name: str
    host: str
    port: int
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """The engine's own name (the instance label has its dots replaced)."""
        return self.properties.get("name") or self.name

    @property
    def device(self) -> str:
        return self.properties.get("device", "")

    @property
    def version(self) -> str:
        return self.properties.get("version", "")

    @property
    def protocol(self) -> int | None:
        text = self.properties.get("protocol", "")
        return int(text) if _is_number(text) else None

    @property
    def tls(self) -> bool:
        return self.properties.get("tls") == "1"

    @property
    def load(self) -> tuple[int, int] | None:
        """(running, queued) jobs when the engine announced them."""
        running, _, queued = self.properties.get("load", "").partition("/")
        if _is_number(running) and _is_number(queued):
            return int(running), int(queued)
        return None


def _is_number(text: str) -> bool:
    # isdigit() alone passes "²" and other Unicode digits that int() refuses; a LAN peer writes these.
    return text.isascii() and text.isdigit()


def load_text(load: dict) -> str:
    """The TXT form of EngineService.load(): "running/queued", e.g. "1/2"."""
    return f"{int(load.get('running', 0))}/{int(load.get('queued', 0))}"


def engine_properties(info: dict, load: dict | None = None) -> dict[str, str]:
    """The TXT properties for an engine's info map (the hello's engine map): never the token."""
    properties = {"name": str(info.get("name", ""))[:_MAX_VALUE], "version": str(info.get("version", "")),
                  "device": str(info.get("device", ""))[:_MAX_VALUE], "tls": "1" if info.get("tls") else "0"}
    if load is not None:
        properties["load"] = load_text(load)
    return properties


def _instance_label(name: str) -> str:
    # A dot would split the DNS-SD instance label, and a label holds at most 63 bytes.
    label = name.replace(".", "-").strip() or "swapline"
    return label.encode()[:63].decode(errors="ignore")


def _lan_addresses() -> list[str]:
    """IPv4 addresses a LAN peer could reach: not loopback, not link-local; loopback if none."""
    import ifaddr

    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith(("127.", "169.254.")):
                found.append(ip.ip)
    return sorted(set(found)) or ["127.0.0.1"]


class EngineAdvertiser:
    """Announce one engine as `<name>._swapline._tcp.local.` until stop().

    The TXT record carries `properties` (an engine's: engine_properties(), i.e. name, version, device,
    tls "1"/"0", load "running/queued") plus "protocol" (the bridge version); update() changes them
    while announced, follow_load() keeps "load" current. Never put the token there: anyone on the LAN can read it. If another engine holds the name, zeroconf picks a new one.
    start() blocks for about 2 s while mDNS probes that the name is free. The engine must listen on
    the advertised addresses (not only 127.0.0.1) for a LAN peer to reach it.
    """

    def __init__(self, name: str, port: int, properties: dict[str, str] | None = None, *,
                 addresses: list[str] | None = None) -> None:
        self.name = _instance_label(name)
        self.port = port
        self.properties = {"protocol": str(PROTOCOL_VERSION), **(properties or {})}
        self.addresses = list(addresses) if addresses else None
        self._zeroconf: Any = None
        self._info: Any = None
        # update() runs on the load thread while stop() may run on the main one.
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._follower: threading.Thread | None = None

    def start(self) -> None:
        from zeroconf import InterfaceChoice, ServiceInfo, Zeroconf

        if self._zeroconf is not None:
            return
        addresses = self.addresses or _lan_addresses()
        host_label = _instance_label(socket.gethostname().split(".")[0])
        info = ServiceInfo(SERVICE_TYPE, f"{self.name}.{SERVICE_TYPE}", port=self.port,
                           properties=self.properties, server=f"{host_label}.local.",
                           parsed_addresses=addresses)
        self._stopped.clear()
        try:
            zeroconf = Zeroconf(interfaces=self.addresses or InterfaceChoice.All)
        except OSError as exc:
            raise BridgeError("unreachable", f"LAN announcement is unavailable: {exc}") from None
        try:
            zeroconf.register_service(info, allow_name_change=True)
        except Exception as exc:  # noqa: BLE001 - zeroconf has its own exception family
            zeroconf.close()
            raise BridgeError("unreachable", f"LAN announcement failed: {exc}") from None
        self._zeroconf, self._info = zeroconf, info

    def update(self, properties: dict[str, str]) -> bool:
        """Merge `properties` into the TXT record and re-announce it if anything changed.

        Before start() this only changes what start() will announce. Returns True when a new record
        went out. A peer browsing afresh sees the new values; one holding a cached copy sees them
        when zeroconf's update reaches it.
        """
        from zeroconf import ServiceInfo

        with self._lock:
            merged = {**self.properties, **{str(k): str(v) for k, v in properties.items()}}
            if merged == self.properties:
                return False
            self.properties = merged
            if self._zeroconf is None:
                return False
            old = self._info
            # register_service may have renamed the instance: keep the name it settled on.
            info = ServiceInfo(old.type, old.name, port=old.port, properties=merged, server=old.server,
                               parsed_addresses=old.parsed_addresses())
            try:
                self._zeroconf.update_service(info)
            except Exception as exc:  # noqa: BLE001 - zeroconf has its own exception family
                raise BridgeError("unreachable", f"LAN announcement update failed: {exc}") from None
            self._info = info
            return True

    def follow_load(self, load: Callable[[], dict], interval: float = LOAD_INTERVAL) -> None:
        """Re-announce `load()` (EngineService.load) every `interval` s on a daemon thread, until stop().

        Only a changed load goes out, so an idle engine sends nothing.
        """
        def run() -> None:
            while not self._stopped.wait(interval):
                try:
                    self.update({"load": load_text(load())})
                except Exception as exc:  # noqa: BLE001 - a bad tick must not end the announcements
                    logging.getLogger("swapline.bridge").warning("engine load not announced: %s", exc)

        self.update({"load": load_text(load())})
        self._follower = threading.Thread(target=run, name="swapline-advertise-load", daemon=True)
        self._follower.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._follower is not None and self._follower is not threading.current_thread():
            self._follower.join(timeout=5.0)
        self._follower = None
        with self._lock:
            zeroconf, info = self._zeroconf, self._info
            self._zeroconf = self._info = None
        if zeroconf is None:
            return
        try:
            zeroconf.unregister_service(info)
        finally:
            zeroconf.close()


def advertise_engine(info: dict, port: int, load: Callable[[], dict] | None = None, *,
                     interval: float = LOAD_INTERVAL, addresses: list[str] | None = None) -> EngineAdvertiser:
    """Announce an engine from its info map (EngineService.info) and keep its load current; stop() it.

    Blocks ~2 s while mDNS probes the name. Raises BridgeError("unreachable") if it cannot announce.
    """
    advertiser = EngineAdvertiser(str(info.get("name") or "swapline"), port,
                                  engine_properties(info, load() if load else None), addresses=addresses)
    advertiser.start()
    if load is not None:
        advertiser.follow_load(load, interval)
    return advertiser


def browse_engines(timeout: float = 2.0, *, interfaces: list[str] | None = None) -> list[DiscoveredEngine]:
    """Listen for engines for `timeout` seconds (plus at most ~1 s to resolve them), sorted by name.

    interfaces: IPv4 addresses to browse on (default: all). Raises BridgeError("unreachable") when
    multicast cannot be used at all.
    """
    from zeroconf import InterfaceChoice, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

    try:
        zeroconf = Zeroconf(interfaces=interfaces or InterfaceChoice.All)
    except OSError as exc:
        raise BridgeError("unreachable", f"LAN discovery is unavailable: {exc}") from None
    names: dict[str, None] = {}  # an ordered set, written by zeroconf's thread
    lock = threading.Lock()

    # zeroconf calls handlers by keyword, so these parameter names are part of its API.
    def on_change(zeroconf: Zeroconf, service_type: str, name: str,
                  state_change: ServiceStateChange) -> None:
        with lock:
            if state_change is ServiceStateChange.Removed:
                names.pop(name, None)
            else:
                names[name] = None

    resolved: dict[str, Any] = {}
    try:
        browser = ServiceBrowser(zeroconf, SERVICE_TYPE, handlers=[on_change])
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(0.1, remaining))
            # Responders usually send SRV/TXT/A along with the PTR: resolve from the cache as
            # names appear, so only stragglers cost a query after the browse period.
            with lock:
                pending = [name for name in names if name not in resolved]
            for name in pending:
                info = ServiceInfo(SERVICE_TYPE, name)
                if info.load_from_cache(zeroconf):
                    resolved[name] = info
        browser.cancel()
        with lock:
            found = list(names)
        deadline = time.monotonic() + _RESOLVE_BUDGET
        for name in found:
            if name not in resolved:
                # Past the budget a straggler is left out: at 100 ms each, a LAN peer announcing
                # a thousand names that never resolve would otherwise hold the search for minutes.
                wait_ms = int((deadline - time.monotonic()) * 1000)
                resolved[name] = zeroconf.get_service_info(SERVICE_TYPE, name, timeout=wait_ms) if wait_ms > 0 else None
        engines = [engine for name in found
                   if (engine := _engine_from_info(name, resolved[name])) is not None]
    finally:
        zeroconf.close()
    return sorted(engines, key=lambda engine: engine.name)


def _engine_from_info(name: str, info: Any) -> DiscoveredEngine | None:
    if info is None or not info.port:
        return None
    addresses = info.parsed_addresses()
    if not addresses:
        return None
    # Prefer IPv4: the engine binds an IPv4 address unless told otherwise.
    host = next((address for address in addresses if ":" not in address), addresses[0])
    properties = {_text(key): _text(value) for key, value in (info.properties or {}).items()}
    label = name[:-len(SERVICE_TYPE)].rstrip(".") if name.endswith(SERVICE_TYPE) else name
    return DiscoveredEngine(label, host, info.port, properties)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
