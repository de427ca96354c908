"""A non-editable install: the wheel carries the demo's configs and sample corpus, and an
installed vjepa finds them from another folder, decoding without decord.

The full newcomer check (fresh clone, fresh venv, README's commands, `vjepa demo --quick`
from a wheel) is tools/check_install.sh: too slow for CI.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARE = "vjepa-0.1.0.data/data/share/vjepa/"
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # see only installed vjepa


def _tracked(folder: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", folder], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return sorted(out.stdout.split())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ROOT / ".git").exists() or importlib.util.find_spec("setuptools") is None:
        pytest.skip("needs a git checkout and setuptools")
    setuptools_major = int(importlib.metadata.version("setuptools").split(".")[0])
    if setuptools_major < 68:
        pytest.skip(f"setuptools {setuptools_major} < 68 (pyproject's build requirement)")
    # Build from a copy of the working tree: setuptools writes build/ and *.egg-info into
    # the source folder, and an egg-info on PYTHONPATH looks like an installed vjepa.
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for f in files:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out), str(src)],
        check=True,
        capture_output=True,
        cwd=out,
        env=_ENV,
    )
    (whl,) = out.glob("vjepa-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_holds_every_config_and_sample_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = _tracked("configs") + _tracked("data")
    assert len(wanted) > 300  # 15 configs, 288 sample videos, lists
    missing = [f for f in wanted if SHARE + f not in names]
    assert not missing, f"add their folders to [tool.setuptools.data-files]: {missing[:10]}"
    assert "vjepa/demo/pretrain.py" in names and "vjepa/data/decode.py" in names


@pytest.mark.slow
def test_installed_wheel_finds_its_data_elsewhere_without_decord(
    wheel: Path, tmp_path: Path
) -> None:
    # A fresh venv that sees this interpreter's packages through a .pth file (no copies).
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    (site,) = env_dir.glob("lib/python3*/site-packages")
    here = [p for p in sys.path if p.endswith("site-packages")]
    (site / "zz_deps.pth").write_text("\n".join(here) + "\n")
    python = env_dir / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q"]
        + [str(wheel)],
        check=True,
        capture_output=True,
        env=_ENV,
    )
    code = """
import importlib.abc, sys
class _NoDecord(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "decord":
            raise ModuleNotFoundError(name, name=name)
sys.meta_path.insert(0, _NoDecord())
import vjepa, vjepa.demo.pretrain as demo
from vjepa.data.decode import open_video
video = next(demo.SAMPLE.glob("left/*.mp4"))
with open_video(video.read_bytes()) as reader:
    n = reader.get_frames([0, reader.num_frames - 1]).shape[0]
print(vjepa.__file__, demo.REPO, demo.PRETRAIN_CONFIG.is_file(), all(p.is_file() for p in demo.PROBE_CONFIGS.values()) and demo.SURPRISE_CONFIG.is_file(),
      n, "decord" in sys.modules)
"""
    proc = subprocess.run(
        [str(python), "-c", code], cwd=tmp_path, env=_ENV, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    module, repo, pretrain, probe, frames, decord = proc.stdout.split()
    assert module.startswith(str(site)) and repo == str(env_dir / "share" / "vjepa")
    assert (pretrain, probe, frames, decord) == ("True", "True", "2", "False")
