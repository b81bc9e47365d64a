"""tools/build_extension.py builds a zip Blender's own builder validates, holding the add-on,
the bridge and the wheels, and nothing of the engine or the tests (offline: stand-in wheels)."""

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

STAND_INS = ("msgpack-1.0.0-cp311-cp311-win_amd64.whl", "zeroconf-0.1.0-cp311-cp311-macosx_11_0_arm64.whl",
             "ifaddr-0.2.0-py3-none-any.whl")


def test_build_extension_zip(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in STAND_INS:
        with zipfile.ZipFile(wheels / name, "w") as archive:
            archive.writestr(f"{name.split('-')[0]}/__init__.py", "")
    run = subprocess.run([sys.executable, "tools/build_extension.py", "--reuse-wheels", "--wheels-dir", str(wheels),
                          "--output-dir", str(tmp_path / "dist")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    zip_path = tmp_path / "dist" / run.stdout.strip().splitlines()[-1].rsplit("/", 1)[-1]
    assert zip_path.is_file()
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        manifest = archive.read("blender_manifest.toml").decode()
    assert {"__init__.py", "blender_manifest.toml", "addon/__init__.py", "addon/engine_link.py",
            "bridge/__init__.py", "bridge/client.py"} <= set(names)
    assert {f"addon/wheels/{name}" for name in STAND_INS} <= set(names)
    assert not [n for n in names if n.split("/")[0] in ("engine", "tests", "tools", "docs", ".venv", "requirements")]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert all(f'"./addon/wheels/{name}"' in manifest for name in STAND_INS)
    # the committed manifest stays wheel-free
    assert "\nwheels = [" not in (REPO / "blender_manifest.toml").read_text()
