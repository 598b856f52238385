"""`dm-tune run --gpus`: the worker spawner with stand-in workers (real processes; no GPU
here, so NVML's list is given and `dm-tune run` is tests/stand_ins/gpu_worker.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tuner.errors import UserError
from tuner.machine import measured_resources
from tuner.study import Worker, parse_gpus, plan_workers, run_on_gpus, run_workers
from tuner.study._workers import format_cores, sampler_seed, split_cores, worker_argv

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = [sys.executable, str(ROOT / "tests" / "stand_ins" / "gpu_worker.py")]
PINS = hasattr(psutil.Process, "cpu_affinity")


def _run(mode: str, gpus: list[int]) -> tuple[int, list[str], list[str]]:
    """Stand-in workers given `mode` (the stand-in's arguments, space-separated)."""
    out: list[str] = []
    err: list[str] = []
    code = run_workers(
        plan_workers(gpus, out.append), [*STAND_IN, *mode.split()], out=out.append, err=err.append
    )
    return code, out, err


def test_each_worker_gets_its_gpu_and_a_disjoint_share_of_the_cores() -> None:
    code, out, _ = _run("ok", [0, 1])
    assert code == 0
    lines = {line.split("]")[0] + "]": line for line in out if "visible=" in line}
    assert set(lines) == {"[gpu0]", "[gpu1]"}  # every line says which worker it came from
    for gpu in (0, 1):
        assert f"visible={gpu} order=PCI_BUS_ID" in lines[f"[gpu{gpu}]"]
    if not PINS:
        return
    shares = [{int(c) for c in lines[f"[gpu{g}]"].split("affinity=")[1].split(",")} for g in (0, 1)]
    assert not shares[0] & shares[1]
    assert shares[0] | shares[1] == set(psutil.Process().cpu_affinity() or [])
    for g, share in enumerate(shares):  # the recorded cores are the pinned ones
        assert f"cores={format_cores(sorted(share))} " in lines[f"[gpu{g}]"]


def test_cores_split_disjoint_covering_near_equal() -> None:
    assert split_cores([0, 1], 2) == [(0,), (1,)]
    assert split_cores(range(10), 3) == [(0, 1, 2, 3), (4, 5, 6), (7, 8, 9)]
    assert format_cores((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8"
    with pytest.raises(UserError, match="only 2 CPU cores"):
        split_cores([0, 1], 3)


def test_a_failing_worker_stops_the_others_and_its_error_shows_once(tmp_path: Path) -> None:
    code, out, err = _run(f"0=wait,1=fail {tmp_path} 1", [0, 1])
    assert code == 2  # the failure's code, not the stopped worker's 143
    assert err.count("[gpu1] error: no such model") == 1
    assert "[gpu0] stopped by SIGTERM" in out


def test_the_same_error_from_every_worker_shows_once() -> None:
    code, _, err = _run("fail", [0, 1])
    assert code == 2
    assert len([e for e in err if "error: no such model" in e]) == 1


def test_worst_exit_code_when_all_end_by_themselves() -> None:
    code, _, _ = _run("0=ok,1=ok", [0, 1])
    assert code == 0


@pytest.mark.skipif(os.name == "nt", reason="POSIX signal to the parent")
def test_sigterm_to_the_parent_reaches_every_worker(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from tuner.study import plan_workers, run_workers\n"
        f"sys.exit(run_workers(plan_workers([0, 1]), {[*STAND_IN, 'wait']!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    assert parent.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while sum("waiting" in s for s in seen) < 2 and time.monotonic() < deadline:
        seen.append(parent.stdout.readline())
    parent.send_signal(signal.SIGTERM)
    rest, _ = parent.communicate(timeout=60)
    assert parent.returncode == 128 + signal.SIGTERM
    assert "[gpu0] stopped by SIGTERM" in rest and "[gpu1] stopped by SIGTERM" in rest


@pytest.mark.parametrize(
    ("text", "present", "words"),
    [
        ("0", [], "NVML finds none here"),
        ("0,0", [0, 1], "GPU 0 is listed twice"),
        ("0,2", [0, 1], "no GPU 2 here; NVML lists GPUs 0,1"),
        ("a", [0], "give GPU indices separated by commas"),
    ],
)
def test_gpus_checked_against_nvml(text: str, present: list[int], words: str) -> None:
    with pytest.raises(UserError, match=words):
        parse_gpus(text, present)


def test_parse_gpus_ok() -> None:
    assert parse_gpus("1, 0", [0, 1]) == [1, 0]


def test_worker_argv_drops_gpus() -> None:
    assert worker_argv(["-n", "5", "--gpus", "0,1", "--gpus=0", "--seed", "1"]) == [
        "-n",
        "5",
        "--seed",
        "1",
    ]


def test_a_worker_locks_its_cores_and_gpu_not_the_whole_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert measured_resources([0, 1]) == ["cpu", "gpu0", "gpu1"]
    for key, value in Worker(1, (2, 3)).env().items():
        monkeypatch.setenv(key, value)
    assert measured_resources([0, 1]) == ["cpu2-3", "gpu1"]
    monkeypatch.setenv("DM_TUNE_WORKER_CORES", "")  # macOS: not pinned, the parent holds cpu
    assert measured_resources([0, 1]) == ["gpu1"]


def test_workers_given_one_seed_each_sample_with_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found measuring two CPU workers with --seed 0: both drew the same random settings at the
    # same time (trials 3 and 4, 7 and 8...), each measured twice.
    monkeypatch.delenv("DM_TUNE_WORKER_SEED_OFFSET", raising=False)
    assert sampler_seed(5) == 5 and sampler_seed(None) is None  # a plain run: as given
    seeds = set()
    for w in (Worker(0, (0,)), Worker(1, (1,)), Worker(3, (2,))):
        for key, value in w.env().items():
            monkeypatch.setenv(key, value)
        seeds.add(sampler_seed(5))
    assert seeds == {5, 6, 8}
    assert sampler_seed(None) is None


def test_run_on_gpus_holds_the_whole_cpu_lock_for_its_workers(tmp_path: Path) -> None:
    out: list[str] = []
    check = (
        "import sys; from tuner.machine import measurement_lock\n"
        "try:\n"
        "    with measurement_lock('t', wait=False, resources=['cpu']): sys.exit(0)\n"
        "except Exception as e: print(e); sys.exit(3)\n"
    )
    code = run_on_gpus(
        "0,1", [], echo=out.append, present=[0, 1], command=[sys.executable, "-c", check]
    )
    assert code == 3  # a standalone run (the whole CPU) is refused while the workers run
    assert any("held by dm-tune run" in line and "workers on GPUs 0,1" in line for line in out)


def test_the_cli_passes_its_own_options_to_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--gpus` hands the given options (not sys.argv) to the library function."""
    from typer.testing import CliRunner

    import tuner.study
    from tuner.cli import app

    got: list[list[str]] = []

    def fake(gpus: str, run_args: list[str], **_: object) -> int:
        got.append([gpus, *run_args])
        return 0

    monkeypatch.setattr(tuner.study, "run_on_gpus", fake)
    args = ["run", "-n", "7", "--gpus", "0,1", "--no-export", "--prefer", "latency", "--no-wait"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert len(got) == 1 and got[0][0] == "0,1"
    flat = got[0]
    assert "--gpus" not in flat and "--no-export" in flat and "--no-wait" in flat
    assert flat[flat.index("--trials") + 1] == "7" and flat[flat.index("--prefer") + 1] == "latency"
