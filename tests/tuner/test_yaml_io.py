"""write_atomic: the file the app loads keeps a readable mode, links stay links, no stray temp
files; and every YAML loader refuses tags without running them."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tuner.errors import UserError
from tuner.yaml_io import TMP_MARK, load_yaml, write_atomic

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes and symlinks")


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@posix_only
def test_a_new_file_gets_the_umasks_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.yaml", "x: 1\n")
        os.umask(0o027)
        write_atomic(tmp_path / "b.yaml", "x: 1\n")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.yaml") == 0o644
    assert _mode(tmp_path / "b.yaml") == 0o640


@posix_only
def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    for mode in (0o644, 0o600, 0o664):
        p.write_text("old\n")
        p.chmod(mode)
        write_atomic(p, "new\n")
        assert _mode(p) == mode and p.read_text() == "new\n"


@posix_only
def test_a_symlink_is_written_through_to_its_target(tmp_path: Path) -> None:
    shipped = tmp_path / "app" / "data" / "profile.yaml"
    shipped.parent.mkdir(parents=True)
    shipped.write_text("old\n")
    shipped.chmod(0o644)
    link = tmp_path / "configs" / "profile.yaml"
    link.parent.mkdir()
    link.symlink_to(shipped)
    write_atomic(link, "new\n")
    assert link.is_symlink() and Path(os.readlink(link)) == shipped
    assert shipped.read_text() == "new\n" and _mode(shipped) == 0o644
    assert not [p for p in link.parent.iterdir() if p != link]  # temp file was by the target
    assert sorted(p.name for p in shipped.parent.iterdir()) == ["profile.yaml"]


@posix_only
def test_a_temp_file_left_by_a_killed_writer_is_removed_on_the_next_write(
    tmp_path: Path,
) -> None:
    """A real writer process killed by SIGKILL mid-write leaves its temp file; the next
    write_atomic removes it (its pid is gone) and leaves a live writer's alone."""
    target = tmp_path / "p.yaml"
    script = textwrap.dedent(
        f"""
        import os, sys
        import tuner.yaml_io as y
        def stall(fd):
            print("writing", flush=True)
            sys.stdin.read()  # killed here, before the rename
        y.os.fsync = stall
        y.write_atomic(__import__("pathlib").Path({str(target)!r}), "half\\n")
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.stdout is not None and proc.stdout.readline() == "writing\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    assert proc.stdin is not None
    proc.stdin.close()
    stale = list(tmp_path.glob(f".p.yaml.*{TMP_MARK}"))
    assert len(stale) == 1 and not target.exists()
    live = tmp_path / f".p.yaml.{os.getppid()}{TMP_MARK}"  # a writer that is still running
    live.write_text("busy\n")
    write_atomic(target, "whole\n")
    assert target.read_text() == "whole\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "p.yaml"]


def test_a_python_tag_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    f = tmp_path / "x.yaml"
    f.write_text(f"a: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(UserError, match=r"YAML tags are not allowed \(!!python/object/apply"):
        load_yaml(f)
    assert not marker.exists()
