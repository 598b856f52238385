"""The loader as Desktop-Mate vendors it: tuner/profile/llm_profile.py and tuner/history_fit.py
copied into the app, run in a fresh virtual environment that holds PyYAML alone (no pydantic,
optuna, pynvml, nor the rest of dm-tune)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml
from profile_data import MakeTrial, write_cpu_profile

from tuner.profile import fit_history

ROOT = Path(__file__).resolve().parents[2]
VENDORED = {
    "llm_profile.py": "tuner/profile/llm_profile.py",
    "history_fit.py": "tuner/history_fit.py",
}
DOCS_PROFILE = ROOT / "docs/benchmarks/data/gpu/run5-pressure/profile-7b-free.yaml"

# Run in the bare venv: the app's start-up, then what it imported.
CHILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import history_fit
import llm_profile

docs, built, model = sys.argv[2:5]
try:
    import pydantic  # noqa: F401
    isolated = False
except ImportError:
    isolated = True
kept = history_fit.fit_history(
    list(range(12)), lambda h: " ".join(map(str, h)), len, n_ctx=64, max_tokens=8
)
print(json.dumps({
    "isolated": isolated,
    "docs": {str(free): llm_profile.select_tier(docs, free).name for free in (24000, 4000, 0)},
    "keys": llm_profile.select_profile(docs, 1400),
    "no_gpu_reading": llm_profile.detect_free_vram_mb(),
    "built": llm_profile.select_profile(built, model_path=model),
    "kept": kept,
    "modules": sorted(
        m for m in sys.modules
        if m.split(".")[0] in {"pydantic", "optuna", "plotly", "tuner", "objectives", "pynvml"}
    ),
}))
"""


def _bare_venv(where: Path) -> Path:
    """A venv without pip whose only extra package is a copy of this one's PyYAML."""
    venv.EnvBuilder(with_pip=False).create(where / "venv")
    py = where / "venv" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    pkgs = where / "pyyaml"
    source = Path(yaml.__file__).parent.parent
    for name in ("yaml", "_yaml"):
        if (source / name).is_dir():
            shutil.copytree(source / name, pkgs / name)
    (Path(site) / "pyyaml.pth").write_text(f"{pkgs}\n", encoding="utf-8")
    return py


def test_the_vendored_loader_runs_with_pyyaml_alone(make_trial: MakeTrial, tmp_path: Path) -> None:
    vendor = tmp_path / "app"
    vendor.mkdir()
    for name, source in VENDORED.items():
        shutil.copy(ROOT / source, vendor / name)
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 3_000_000)  # past both ends quick_digest reads
    built = write_cpu_profile(model, make_trial, tmp_path / "profile.yaml")
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "PYTHONNOUSERSITE": "1"}
    out = subprocess.run(
        [_bare_venv(tmp_path), "-I", "-c", CHILD, str(vendor), str(DOCS_PROFILE), built, model],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["isolated"] is True
    assert got["modules"] == []
    assert got["docs"] == {"24000": "performance", "4000": "balanced", "0": "cpu_fallback"}
    assert got["keys"]["n_gpu_layers"] == 3  # low_vram: needs 1378 MB free
    assert got["no_gpu_reading"] == 0.0  # no pynvml in the venv
    assert got["built"]["n_ctx"] == 512 and got["built"]["n_gpu_layers"] == 0
    assert got["kept"] == fit_history(
        list(range(12)), lambda h: " ".join(map(str, h)), len, n_ctx=64, max_tokens=8
    )
    assert list(home.iterdir()) == []  # nothing written: no hash cache
    assert sorted(p.name for p in vendor.iterdir() if p.is_file()) == sorted(VENDORED)


@pytest.mark.parametrize("source", sorted(VENDORED.values()))
def test_the_vendored_files_import_nothing_from_dm_tune(source: str) -> None:
    text = (ROOT / source).read_text(encoding="utf-8")
    imports = [line for line in text.splitlines() if line.startswith(("import ", "from "))]
    assert not [line for line in imports if "tuner" in line or "objectives" in line]
    assert not [line for line in imports if "pydantic" in line or "optuna" in line]


def test_import_tuner_profile_works_with_pyyaml_alone(tmp_path: Path) -> None:
    """The app may also import the package from a checkout: `import tuner.profile` in a venv
    holding PyYAML alone loads the loader and the history helper, nothing else of dm-tune."""
    child = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import tuner.profile as p; "
        "print(json.dumps({'select': callable(p.select_profile), 'modules': sorted("
        "m for m in sys.modules if m.split('.')[0] in "
        "{'pydantic', 'optuna', 'plotly', 'tuner', 'objectives', 'pynvml', 'sqlalchemy'})}))"
    )
    out = subprocess.run(
        [_bare_venv(tmp_path), "-I", "-c", child, str(ROOT)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["select"] is True
    assert got["modules"] == [
        "tuner",
        "tuner.history_fit",
        "tuner.profile",
        "tuner.profile.llm_profile",
    ]
