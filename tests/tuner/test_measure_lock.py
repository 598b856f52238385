"""The measurement lock with real processes holding it: refused, waited for, freed by death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuner.errors import UserError
from tuner.machine import lock_dir, measured_resources, measurement_lock, read_holder, relabel

ROOT = Path(__file__).resolve().parents[2]
RES = ["cpu", "gpu0"]
HOLD = """
import sys
from tuner.machine import measurement_lock
with measurement_lock(sys.argv[1], sys.argv[2], wait=sys.argv[3] == "wait",
                      resources=["cpu", "gpu0"]):
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


def _holder(command: str, label: str, wait: bool = True) -> subprocess.Popen[str]:
    """A real process that takes the lock (in the test's lock dir, inherited through the
    environment) and keeps it until a line arrives on its stdin."""
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, command, label, "wait" if wait else "no-wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


def _line(p: subprocess.Popen[str]) -> str:
    assert p.stdout is not None
    return p.stdout.readline().strip()


@pytest.fixture
def holder() -> Iterator[subprocess.Popen[str]]:
    p = _holder("dm-tune run", "study 'night'")
    assert _line(p) == "held"
    yield p
    if p.poll() is None:
        p.kill()
    p.wait(timeout=30)
    for f in (p.stdin, p.stdout):
        if f is not None:
            f.close()


def test_the_holder_is_written_and_cleared(tmp_path: Path) -> None:
    assert lock_dir() == tmp_path / "locks"  # the autouse fixture
    with measurement_lock("dm-tune verify", "profile p.yaml", resources=RES):
        for name in RES:
            h = read_holder(tmp_path / "locks" / f"{name}.lock")
            assert h is not None and h.pid == os.getpid()
            assert (h.command, h.label) == ("dm-tune verify", "profile p.yaml")
        relabel("study 'later'")
        h = read_holder(tmp_path / "locks" / "cpu.lock")
        assert h is not None and h.label == "study 'later'"
        with measurement_lock("dm-tune run", resources=RES):  # nested: no self-deadlock
            pass
    assert read_holder(tmp_path / "locks" / "cpu.lock") is None
    with measurement_lock("dm-tune run", wait=False, resources=RES):  # free again
        pass


def test_a_second_acquirer_without_wait_is_refused_naming_the_holder(
    holder: subprocess.Popen[str],
) -> None:
    refused = measurement_lock("dm-tune run", wait=False, resources=["cpu"])
    with pytest.raises(UserError) as exc, refused:
        pytest.fail("entered a lock held by another process")
    msg = str(exc.value)
    assert f"dm-tune run pid {holder.pid} (study 'night') since " in msg
    assert "on the CPU" in msg and "\n" not in msg
    # only another GPU: free
    with measurement_lock("dm-tune run", wait=False, resources=["gpu1"]):
        pass


def test_a_second_acquirer_waits_until_the_holder_releases(
    holder: subprocess.Popen[str],
) -> None:
    second = _holder("dm-tune soak", "profile p.yaml")
    try:
        waiting = _line(second)  # printed before it blocks: an event, not a sleep
        assert waiting.startswith("waiting for the measurement lock on the CPU held by ")
        assert f"dm-tune run pid {holder.pid} (study 'night') since " in waiting
        assert second.poll() is None  # still waiting
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert _line(holder) == "released"
        assert _line(second) == "measurement lock on the CPU acquired"
        assert _line(second) == "held"
        h = read_holder(lock_dir() / "cpu.lock")
        assert h is not None and (h.pid, h.command) == (second.pid, "dm-tune soak")
    finally:
        second.kill()
        second.wait(timeout=30)
        for f in (second.stdin, second.stdout):
            if f is not None:
                f.close()


def test_a_killed_holder_frees_the_lock_at_once(holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert read_holder(lock_dir() / "cpu.lock") is not None  # its file stays behind...
    with measurement_lock("dm-tune run", wait=False, resources=RES):  # ...and blocks nothing
        h = read_holder(lock_dir() / "cpu.lock")
        assert h is not None and h.pid == os.getpid()


def test_resources_are_the_cpu_and_the_visible_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert measured_resources([]) == ["cpu"]
    assert measured_resources([1, 0]) == ["cpu", "gpu0", "gpu1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert measured_resources([0, 1]) == ["cpu", "gpu1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1234abcd")  # UUIDs: every GPU, to be safe
    assert measured_resources([0, 1]) == ["cpu", "gpu0", "gpu1"]


def test_the_default_folder_is_in_dm_tunes_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DM_TUNE_LOCK_DIR")
    monkeypatch.setenv("DM_TUNE_CACHE", str(tmp_path / "c"))
    assert lock_dir() == tmp_path / "c" / "locks"


def test_verify_soak_and_export_confirm_refuse_with_no_wait_and_plain_export_never_waits(
    holder: subprocess.Popen[str], demo_model: Path, tmp_path: Path
) -> None:
    """In-process CLI against a real holder process; refused before any measuring starts."""
    import optuna
    from demo_profile import write_demo_profile
    from typer.testing import CliRunner

    from tuner.cli import app

    workload = tmp_path / "workload.yaml"
    workload.write_text(
        "version: 2\nsystem_prompt: Tu es Kira.\nmessage: Salut ?\ngen_tokens: 4\nrepeats: 1\n",
        encoding="utf-8",
    )
    profile = write_demo_profile(tmp_path / "p.yaml", demo_model, tok_s=50)
    db = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=db, study_name="s", directions=["maximize", "minimize"])
    study.set_user_attr("model", {"path": str(demo_model)})
    study.set_user_attr("confirm_spec", {})
    runner = CliRunner()
    who = f"held by dm-tune run pid {holder.pid} (study 'night') since "
    for args in (
        ["verify", str(profile), "--workload", str(workload), "--no-wait"],
        ["soak", str(profile), "--workload", str(workload), "--no-wait"],
        ["export", "--storage", db, "--confirm", "1", "--no-wait"],
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, r.output
        assert r.output.startswith("error: the measurement lock on the CPU ") and who in r.output
        assert r.output.count("\n") == 1, r.output
    # export without --confirm only reads: no lock, so it runs (and fails on the empty study)
    r = runner.invoke(app, ["export", "--storage", db, "--no-wait"])
    assert "measurement lock" not in r.output


def test_a_lock_folder_that_cannot_be_made_is_a_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("DM_TUNE_LOCK_DIR", str(tmp_path / "file" / "locks"))
    lock = measurement_lock("dm-tune run", resources=RES)
    with pytest.raises(UserError, match="point DM_TUNE_LOCK_DIR at a folder you can write"), lock:
        pytest.fail("entered a lock that has no folder")
