"""Finding engines on the LAN from the add-on (scenarios/discovery.py): opt-in, honours Blender's online
access, lists what a real announcement on loopback says and fills the preferences from it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def loopback_multicast_problem() -> str | None:
    # The bridge's discovery test owns the probe; tests are not a package (importlib import mode).
    path = Path(__file__).resolve().parents[1] / "bridge" / "test_bridge_discovery.py"
    spec = importlib.util.spec_from_file_location("_bridge_discovery_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.loopback_multicast_problem()


def test_search_refuses_until_the_user_and_blender_allow_it(run_scenario):
    out = run_scenario("discovery", "refuse")
    assert out["default_toggle"] is False
    assert out["closed_box"] == ["prop"]  # only the toggle: no search button, no list
    assert out["toggle_off"][0] is None and "Find engines on the network" in out["toggle_off"][1]
    assert out["online_off"][0] is None
    assert "Allow Online Access is off in Preferences > System > Network" in out["online_off"][1]
    assert "Allow Online Access is off in Preferences > System > Network" in out["online_off_labels"]
    assert out["searching_after_refusals"] is False and out["drain_idle"] is None
    assert out["no_choice"][0] is None and "Choose an engine" in out["no_choice"][1]


def test_a_loopback_engine_is_found_listed_and_chosen(run_scenario):
    problem = loopback_multicast_problem()
    if problem is not None:
        pytest.skip(problem)
    out = run_scenario("discovery", "find", timeout=180)
    # each search: the operator finishes at once, the search runs on, finish_search() applies it
    assert out["runs"][:3] == [[["FINISHED"], ""], True, True], out["runs"]
    name, host, port, device, version, load, tls, protocol = out["found"]
    assert name.startswith("swapline@gpu.scenario")
    assert (host, port, device, version, load, tls) == (
        "127.0.0.1", 47321, "NVIDIA H100 (80 GiB)", "9.9.9", "1 running, 2 queued", True)
    assert protocol >= 1
    assert out["message"].startswith("Found ")

    box = out["box"]
    assert box["problems"] == []
    assert "template_list" in box["calls"] and box["operators"] == ["swapline.find_engines", "swapline.use_engine"]
    assert "Load: 1 running, 2 queued  ·  TLS" in box["labels"]
    assert box["row"] == [name, "127.0.0.1:47321", "NVIDIA H100 (80 GiB)", "9.9.9", "1 running, 2 queued"]

    assert out["use"] == [["FINISHED"], ""]
    # host, port and TLS come from the announcement; the old engine's pinned certificate is dropped;
    # the token is the user's to type
    assert out["prefs"] == ["REMOTE", "127.0.0.1", 47321, True, "", "typed-token"]
    assert out["config"] == ["REMOTE", "127.0.0.1", 47321, True, "", "typed-token"]

    labels = out["panel"]["labels"]
    assert out["panel"]["problems"] == []
    assert "NVIDIA H100 (80 GiB)" in labels and "Load: 1 running, 1 queued" in labels
    assert out["no_choice"][0] is None
