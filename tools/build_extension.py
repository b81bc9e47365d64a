"""`make extension`: build the Swapline extension zip for Blender 5.0 and check it.

1. Download the wheels of the bridge's dependencies (msgpack, zeroconf, ifaddr; the versions
   installed here, so the zip ships what the tests ran) for CPython 3.11 on Linux x86_64, macOS
   arm64 and x86_64, and Windows amd64 into addon/wheels/ (gitignored). Pure-Python wheels
   (py3-none-any) serve every platform and are kept once.
2. Copy the extension root to a staging folder and write its manifest with the `wheels` and
   `platforms` lists filled in; the committed manifest stays wheel-free, so a source checkout,
   whose Python already has these packages, still loads as an extension.
3. Build and validate with Blender's own builder (bl_pkg/cli/blender_ext.py inside the bpy wheel),
   check what the zip holds, and print its path as the last line.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / "addon" / "wheels"
PACKAGES = ("msgpack", "zeroconf", "ifaddr")
PYTHON_VERSION, ABI = "3.11", "cp311"  # Blender 5.0 bundles Python 3.11
# Blender platform name -> pip platform tags (pip also accepts older manylinux/macOS tags for these)
PLATFORMS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "macos-arm64": ["macosx_11_0_arm64"],
    "macos-x64": ["macosx_10_13_x86_64", "macosx_10_9_x86_64"],
    "windows-x64": ["win_amd64"],
}
# Never copied to the staging folder: large, and excluded from the zip anyway.
STAGING_SKIP = {".git", ".venv", "dist", "build", "demo_out", "__pycache__", ".pytest_cache"}
MUST_HAVE = ("__init__.py", "blender_manifest.toml", "addon/__init__.py", "addon/sync.py", "bridge/__init__.py",
             "bridge/client.py")
MUST_NOT_HAVE = ("engine/", "tests/", "tools/", "docs/", ".venv/", "requirements/", ".ci/", ".git/")


def builder() -> Path:
    """Blender's extension builder, shipped inside the bpy wheel."""
    import sysconfig

    found = sorted(Path(sysconfig.get_paths()["purelib"]).glob("bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise SystemExit("build_extension: Blender's extension builder (the bpy wheel) is not installed")
    return found[-1]


def pinned(package: str) -> str:
    try:
        return f"{package}=={importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return package


def download_wheels() -> list[Path]:
    """Fetch every package for every platform; returns the wheel files, sorted."""
    if WHEELS.exists():
        shutil.rmtree(WHEELS)
    WHEELS.mkdir(parents=True)
    for platform, tags in PLATFORMS.items():
        for package in PACKAGES:
            # The tested version first; a platform it has no wheel for (zeroconf stopped building
            # macOS x86_64 wheels) gets the newest version that has one.
            for requirement in dict.fromkeys((pinned(package), package)):
                run = subprocess.run(_pip_download(requirement, tags), capture_output=True, text=True)
                if run.returncode == 0:
                    break
            else:
                raise SystemExit(f"build_extension: no {platform} wheel of {package}:\n{run.stderr.strip()}")
            if requirement != pinned(package):
                print(f"build_extension: {platform} has no wheel of {pinned(package)}; "
                      f"bundling the newest {package} that has one", flush=True)
        print(f"build_extension: wheels for {platform} ready", flush=True)
    wheels = sorted(WHEELS.glob("*.whl"))
    for package in PACKAGES:
        if not any(w.name.lower().startswith(package.lower() + "-") for w in wheels):
            raise SystemExit(f"build_extension: no wheel of {package} was downloaded")
    return wheels


def _pip_download(requirement: str, tags: list[str]) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--only-binary=:all:", "--no-deps", "--python-version", PYTHON_VERSION, "--implementation", "cp",
            "--abi", ABI, "--abi", "abi3", "--abi", "none", *[arg for tag in tags for arg in ("--platform", tag)],
            "--dest", str(WHEELS), requirement]


def staged_manifest(text: str, wheels: list[Path]) -> str:
    """The manifest with `wheels` and `platforms` set: top-level keys go before the first table."""
    lines = ["wheels = ["] + [f'  "./addon/wheels/{w.name}",' for w in wheels] + ["]",
             "platforms = [" + ", ".join(f'"{p}"' for p in PLATFORMS) + "]", ""]
    text = re.sub(r"(?m)^(wheels|platforms)\s*=.*$", "", text)
    table = re.search(r"(?m)^\[", text)
    at = table.start() if table else len(text)
    return text[:at] + "\n".join(lines) + "\n" + text[at:]


def stage(wheels: list[Path], staging: Path) -> Path:
    """Copy the extension root to `staging`, with exactly `wheels` in addon/wheels/."""
    source = staging / "swapline"
    source.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in STAGING_SKIP:
            continue
        target = source / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "wheels"))
        else:
            shutil.copy2(entry, target)
    (source / "addon" / "wheels").mkdir()
    for wheel in wheels:
        shutil.copy2(wheel, source / "addon" / "wheels" / wheel.name)
    manifest = (ROOT / "blender_manifest.toml").read_text()
    (source / "blender_manifest.toml").write_text(staged_manifest(manifest, wheels))
    return source


def build(source: Path, output: Path, split: bool) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    before = {p: p.stat().st_mtime for p in output.glob("*.zip")}
    command = [sys.executable, str(builder()), "build", "--source-dir", str(source), "--output-dir", str(output)]
    if split:
        command.append("--split-platforms")
    run = subprocess.run(command, capture_output=True, text=True)
    print(run.stdout.strip())
    if run.returncode != 0:
        raise SystemExit(f"build_extension: the builder failed:\n{run.stderr.strip()}")
    built = [p for p in output.glob("*.zip") if before.get(p) != p.stat().st_mtime]
    if not built:
        raise SystemExit("build_extension: the builder wrote no zip")
    return sorted(built)


def check(zip_path: Path) -> None:
    run = subprocess.run([sys.executable, str(builder()), "validate", str(zip_path)], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"build_extension: {zip_path.name} does not validate:\n{run.stdout}{run.stderr}")
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
    missing = [name for name in MUST_HAVE if name not in names]
    stray = sorted({name for name in names for prefix in MUST_NOT_HAVE if name.startswith(prefix)})
    bundled = {Path(name).name for name in names if name.endswith(".whl")}
    if missing or stray:
        raise SystemExit(f"build_extension: {zip_path.name}: missing {missing}, must not contain {stray[:10]}")
    for package in PACKAGES:
        if not any(name.lower().startswith(package.lower() + "-") for name in bundled):
            raise SystemExit(f"build_extension: {zip_path.name} bundles no {package} wheel")
    print(f"build_extension: {zip_path.name}: {len(names)} files, {len(bundled)} wheels, validated", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist")
    parser.add_argument("--split-platforms", action="store_true", help="one zip per platform")
    parser.add_argument("--reuse-wheels", action="store_true",
                        help="use the wheels already in --wheels-dir instead of downloading")
    parser.add_argument("--wheels-dir", type=Path, default=WHEELS, help="where --reuse-wheels finds them")
    args = parser.parse_args(argv)
    wheels = sorted(args.wheels_dir.glob("*.whl")) if args.reuse_wheels else download_wheels()
    if not wheels:
        raise SystemExit(f"build_extension: no wheels in {args.wheels_dir}; run without --reuse-wheels")
    with tempfile.TemporaryDirectory(prefix="swapline-build-") as tmp:
        source = stage(wheels, Path(tmp))
        zips = build(source, args.output_dir.resolve(), args.split_platforms)
    for zip_path in zips:
        check(zip_path)
    for zip_path in zips:
        print(zip_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
