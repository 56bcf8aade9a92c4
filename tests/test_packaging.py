"""The built wheel: what `pip install hf-cut` would give — the package with its data files, the `hf-cut` command, the
license, the version from one place — installed to a folder of its own and run from there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of what the sdist holds (the build writes its `build/` folder there, not in the checkout)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT / "hf_cut", source / "hf_cut", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out),
                             str(source)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (path,) = out.glob("hf_cut-*.whl")
    return path


def test_wheel_contents(wheel):
    import hf_cut

    names = set(zipfile.ZipFile(wheel).namelist())
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(wheel).read(meta).decode()
    assert f"Version: {hf_cut.__version__}" in metadata and "License-Expression: Apache-2.0" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert {"hf_cut/py.typed", "hf_cut/cli/__init__.py", "hf_cut/evaluation/generation/local_annotator/configs.yaml"} <= names
    entry_points = zipfile.ZipFile(wheel).read(meta.replace("METADATA", "entry_points.txt")).decode()
    assert "hf-cut = hf_cut.cli:main" in entry_points
    assert not any(n.startswith(("tests/", "recipes/", "studies/", "docs/")) for n in names)


def test_installed_wheel_runs_its_command(wheel, tmp_path):
    """Installed on its own (its dependencies are this environment's), away from the repository: the command's
    entry point lists the subcommands and its `sweep --help` parses."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    code = "import hf_cut, sys; from hf_cut.cli import main; print(hf_cut.__file__); sys.exit(main(sys.argv[1:]))"
    for args, expected in ((["--help"], "frontier"), (["sweep", "--help"], "--gammas")):
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                                cwd=tmp_path, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.startswith(str(target)) and expected in result.stdout
