"""This machine: hardware detection, the llama.cpp build probe, `dm-tune doctor`, the demo model
and the measurement lock (one measuring run at a time)."""

from tuner.machine._demo_model import SHA256 as DEMO_MODEL_SHA256
from tuner.machine._demo_model import ensure_demo_model
from tuner.machine._doctor import (
    collect,
    reinstall_commands,
    render,
    suggested_budget_mb,
    sysmem_fallback_hint,
    vram_report,
)
from tuner.machine._hardware import Hardware, detect, slugify
from tuner.machine._measure_lock import (
    WORKER_CORES_ENV,
    lock_dir,
    measured_resources,
    measurement_lock,
    read_holder,
    relabel,
)
from tuner.machine._probe import SMOKE_PARAMS, Probe, crash_diagnosis, run_probe

__all__ = [
    "DEMO_MODEL_SHA256",
    "SMOKE_PARAMS",
    "WORKER_CORES_ENV",
    "Hardware",
    "Probe",
    "collect",
    "crash_diagnosis",
    "detect",
    "ensure_demo_model",
    "lock_dir",
    "measured_resources",
    "measurement_lock",
    "read_holder",
    "reinstall_commands",
    "relabel",
    "render",
    "run_probe",
    "slugify",
    "suggested_budget_mb",
    "sysmem_fallback_hint",
    "vram_report",
]
