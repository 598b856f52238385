"""One worker per GPU (`dm-tune run --gpus 0,1`): one `dm-tune run` child per GPU on one study.

Each child sees one GPU (`CUDA_VISIBLE_DEVICES=<i>` with `CUDA_DEVICE_ORDER=PCI_BUS_ID`, so
CUDA's numbering is NVML's) and, where the OS can pin threads (Linux, Windows), its own share
of the cores, named in `DM_TUNE_WORKER_CORES` so the trial records it and the measurement
lock takes those cores instead of the whole CPU. macOS has no affinity: the workers share all
cores, and the run says so. The parent prefixes each line with `[gpuN]`, forwards Ctrl-C and
SIGTERM, and exits with the worst exit code (the first failure's, when it stopped the others).
The workers don't export; once all are done, one more run (`finisher`) confirms and exports.
With `--seed`, each worker's sampler seed is offset by its GPU index (`sampler_seed`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO, Any

import psutil

from tuner.echo import Echo
from tuner.errors import UserError
from tuner.machine import WORKER_CORES_ENV as CORES_ENV
from tuner.machine import measurement_lock
from tuner.study._lifeline import parent_env

_POLL_S = 0.05
# Added to --seed in a worker: workers sharing one seed would draw the same random settings at
# the same time while the sampler is still random, and measure each twice.
SEED_OFFSET_ENV = "DM_TUNE_WORKER_SEED_OFFSET"
# "1" in a worker that runs trials only: the study's summary is the last run's (`finisher`)
TRIALS_ONLY_ENV = "DM_TUNE_WORKER_TRIALS_ONLY"


@dataclass(frozen=True)
class Worker:
    """One worker's share of the machine; `last`: the run after the workers (`finisher`)."""

    gpu: int
    cores: tuple[int, ...]  # empty: not pinned (macOS)
    last: bool = False

    @property
    def tag(self) -> str:
        return f"gpu{self.gpu}"

    def env(self) -> dict[str, str]:
        return {
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "CUDA_VISIBLE_DEVICES": str(self.gpu),
            CORES_ENV: format_cores(self.cores),
            SEED_OFFSET_ENV: str(self.gpu),  # unique among one run's workers
            TRIALS_ONLY_ENV: "" if self.last else "1",
        }


def trials_only() -> bool:
    """Whether this `dm-tune run` is a --gpus worker that leaves the study's summary (and the
    hints after it) to the run after the workers, which sees the whole study."""
    return os.environ.get(TRIALS_ONLY_ENV) == "1"


def sampler_seed(seed: int | None) -> int | None:
    """The sampler's seed in this process: `--seed` as given, plus the worker's offset when
    `dm-tune run --gpus` started it (each worker then draws its own settings; the run stays
    reproducible as far as parallel trials allow)."""
    offset = os.environ.get(SEED_OFFSET_ENV, "")
    return None if seed is None else seed + (int(offset) if offset.isdigit() else 0)


def parse_gpus(text: str, present: Sequence[int]) -> list[int]:
    """`--gpus 0,1` checked against NVML's GPU indices; a UserError says what to fix."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(p.isdigit() for p in parts):
        raise UserError(f"--gpus {text!r}: give GPU indices separated by commas, e.g. --gpus 0,1")
    gpus = [int(p) for p in parts]
    dupes = sorted({g for g in gpus if gpus.count(g) > 1})
    if dupes:
        raise UserError(
            f"--gpus {text}: GPU {dupes[0]} is listed twice; parallel trials on one GPU disturb "
            "each other's figures, so give each GPU once"
        )
    if not present:
        raise UserError(
            "--gpus needs NVIDIA GPUs, and NVML finds none here; "
            "run without --gpus, or check the driver with `nvidia-smi`"
        )
    missing = [g for g in gpus if g not in present]
    if missing:
        have = ",".join(str(i) for i in present)
        raise UserError(f"--gpus {text}: no GPU {missing[0]} here; NVML lists GPUs {have}")
    return gpus


def nvml_gpu_indices() -> list[int]:
    from objectives.nvml import list_gpus

    return [g.index for g in list_gpus()]


def format_cores(cores: Sequence[int]) -> str:
    """Cores as ranges: (0, 1, 2, 5) -> "0-2,5"."""
    out: list[str] = []
    run: list[int] = []
    for c in sorted(cores):
        if run and c != run[-1] + 1:
            out.append(_span(run))
            run = []
        run.append(c)
    if run:
        out.append(_span(run))
    return ",".join(out)


def _span(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


def can_pin() -> bool:
    """psutil sets affinity on Linux and Windows (and FreeBSD); macOS has no such call."""
    return hasattr(psutil.Process, "cpu_affinity")


def split_cores(cores: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """`cores` in n contiguous, disjoint, near-equal shares covering all of them."""
    ordered = sorted(cores)
    if n > len(ordered):
        raise UserError(
            f"{n} workers but only {len(ordered)} CPU cores here: give at most "
            f"{len(ordered)} GPUs to --gpus"
        )
    size, extra = divmod(len(ordered), n)
    shares, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        shares.append(tuple(ordered[start:end]))
        start = end
    return shares


def plan_workers(gpus: Sequence[int], echo: Echo = print) -> list[Worker]:
    """One worker per GPU with its share of the cores this process may use."""
    if not can_pin():
        echo(
            "note: this OS cannot pin processes to cores (macOS): the workers share all cores, "
            "so their figures can disturb each other more than on Linux or Windows"
        )
        return [Worker(g, ()) for g in gpus]
    mine = psutil.Process().cpu_affinity() or list(range(psutil.cpu_count() or 1))
    return [Worker(g, c) for g, c in zip(gpus, split_cores(mine, len(gpus)), strict=True)]


def worker_argv(run_args: Sequence[str]) -> list[str]:
    """The run's own arguments without `--gpus`: what each worker is started with."""
    out: list[str] = []
    skip = False
    for a in run_args:
        if skip:
            skip = False
        elif a == "--gpus":
            skip = True
        elif not a.startswith("--gpus="):
            out.append(a)
    return out


class _Fleet:
    """The running workers: output forwarding, signal forwarding, stopping."""

    def __init__(self, workers: list[Worker], out: Echo, err: Echo) -> None:
        self.workers = workers
        self.out, self.err = out, err
        self.procs: list[subprocess.Popen[str]] = []
        self.threads: list[threading.Thread] = []
        self.print_lock = threading.Lock()
        self.errors_seen: set[str] = set()
        self.stopping = False

    def start(self, command: Sequence[str]) -> None:
        lifeline = parent_env()  # each worker stops if this process is gone (_lifeline.py)
        for w in self.workers:
            p = subprocess.Popen(
                list(command),
                env={**os.environ, **w.env(), **lifeline},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                bufsize=1,
                start_new_session=True,  # Ctrl-C reaches them once: through forward()
                # a new process group on Windows, for the same reason
                creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
            )
            self.procs.append(p)
            if w.cores:
                psutil.Process(p.pid).cpu_affinity(list(w.cores))
            assert p.stdout is not None and p.stderr is not None
            for stream, echo in ((p.stdout, self.out), (p.stderr, self.err)):
                t = threading.Thread(target=self._pump, args=(w.tag, stream, echo), daemon=True)
                t.start()
                self.threads.append(t)

    def _pump(self, tag: str, stream: IO[str], echo: Echo) -> None:
        with stream:
            for line in stream:
                self._show(tag, line.rstrip("\n"), echo)

    def _show(self, tag: str, line: str, echo: Echo) -> None:
        with self.print_lock:
            if line.startswith("error:"):  # every worker hits the same bad input: once
                if line in self.errors_seen:
                    return
                self.errors_seen.add(line)
            echo(f"[{tag}] {line}")

    def forward(self, sig: int) -> None:
        """Send a signal to every live worker (they stop as a single run would)."""
        self.stopping = True
        for p in self.procs:
            if p.poll() is None:
                try:
                    psutil.Process(p.pid).send_signal(_for_os(sig))
                except psutil.NoSuchProcess:
                    pass

    def wait(self) -> int:
        first_failure: int | None = None
        while [p.poll() for p in self.procs].count(None):  # poll each: it sets returncode
            if first_failure is None and not self.stopping:
                failed = [_code(p.returncode) for p in self.procs if p.returncode not in (None, 0)]
                if failed:
                    first_failure = failed[0]
                    self.forward(signal.SIGTERM)
            time.sleep(_POLL_S)
        for t in self.threads:
            t.join()
        codes = [_code(p.returncode) for p in self.procs]
        if first_failure is None and not self.stopping:
            first_failure = next((c for c in codes if c), None)
        return first_failure if first_failure is not None else max(codes)


def _for_os(sig: int) -> int:
    if os.name == "nt":  # a console process group takes Ctrl-Break, not SIGINT
        return int(getattr(signal, "CTRL_BREAK_EVENT", sig))
    return sig


def _code(returncode: int | None) -> int:
    """A worker's exit code as a shell shows it: killed by signal N -> 128 + N."""
    rc = returncode or 0
    return 128 - rc if rc < 0 else rc


def run_workers(
    workers: list[Worker],
    command: Sequence[str],
    *,
    out: Echo = print,
    err: Echo | None = None,
) -> int:
    """Run `command` once per worker, each with its GPU and cores; the worst exit code.

    Ctrl-C and SIGTERM are forwarded to every worker (each keeps its finished trials and marks
    the one it measured as interrupted, as a single run does). A worker that fails while the
    others run makes the parent stop them; its exit code is the result.
    """
    fleet = _Fleet(workers, out, err or (lambda s: print(s, file=sys.stderr)))

    def on_signal(sig: int, _frame: FrameType | None) -> None:
        fleet.forward(sig)

    old: dict[int, Any] = {}
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, on_signal)
    try:
        fleet.start(command)
        return fleet.wait()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if any(p.poll() is None for p in fleet.procs):  # an error in the parent itself
            fleet.forward(signal.SIGTERM)


def worker_command(run_args: Sequence[str]) -> list[str]:
    """`python -m tuner.cli run <args without --gpus>`."""
    return [sys.executable, "-m", "tuner.cli", "run", *worker_argv(run_args)]


def run_on_gpus(
    gpus_text: str,
    run_args: Sequence[str],
    *,
    wait: bool = True,
    echo: Echo = print,
    present: Sequence[int] | None = None,
    command: Sequence[str] | None = None,
) -> int:
    """`dm-tune run --gpus 0,1`: check the GPUs, then one worker per GPU on the run's study.

    The parent holds the whole-CPU measurement lock while its workers run (each worker locks
    its own cores and GPU), so another run on this machine waits for the fleet as it would
    for one run. `present` and `command` stand in for NVML and `dm-tune run` in tests.
    """
    gpus = parse_gpus(gpus_text, nvml_gpu_indices() if present is None else present)
    workers = plan_workers(gpus, echo)
    for w in workers:
        cores = format_cores(w.cores) or "all (not pinned)"
        echo(f"worker gpu{w.gpu}: CUDA_VISIBLE_DEVICES={w.gpu}, CPU cores {cores}")
    label = "workers on GPUs " + ",".join(str(g) for g in gpus)
    with measurement_lock("dm-tune run", label, wait=wait, echo=echo, resources=["cpu"]):
        code = run_workers(workers, command or worker_command([*run_args, NO_EXPORT]), out=echo)
        if code != 0:
            return code
        last = finisher(workers)
        echo(
            f"All workers done. The study's summary, confirmation and export, once: on GPU "
            f"{last.gpu}, CPU cores {format_cores(last.cores) or 'all'}"
        )
        return run_workers([last], command or worker_command(run_args), out=echo)


NO_EXPORT = "--no-export"


def finisher(workers: Sequence[Worker]) -> Worker:
    """Where `--gpus` ends, once every worker is done: the same `dm-tune run` on the first
    worker's GPU and all of their cores finds the study full, prints its summary, confirms the
    top candidates and exports the profile, once. The workers run with --no-export: each would
    confirm and export as it finished, the first before the others' last trials were in, two at
    once re-measuring the same candidates and writing one profile over the other."""
    return Worker(workers[0].gpu, tuple(sorted({c for w in workers for c in w.cores})), True)
