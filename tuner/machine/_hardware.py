"""Describe the machine: CPU, RAM, NVIDIA GPUs. Recorded with every study and profile."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from objectives.nvml import GpuInfo, list_gpus


def cpu_model() -> str:
    if sys.platform.startswith("linux"):
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True
            )
            if out.stdout.strip():
                return out.stdout.strip()
        except OSError:
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


@dataclass(frozen=True)
class Hardware:
    cpu: str
    physical_cores: int
    logical_cores: int
    ram_mb: float
    os: str
    gpus: tuple[GpuInfo, ...]

    @property
    def gpu_name(self) -> str | None:
        return self.gpus[0].name if self.gpus else None

    def slug(self) -> str:
        """Short machine name for a default study name."""
        base = self.gpu_name or f"{self.cpu} {self.logical_cores}t"
        return slugify(base)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gpus"] = [asdict(g) for g in self.gpus]
        return d


def slugify(text: str, max_len: int = 48) -> str:
    text = re.sub(r"\((r|tm)\)|\b(cpu|processor|with|radeon graphics)\b|@.*", "", text, flags=re.I)
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")[:max_len].strip("-")


def detect() -> Hardware:
    return Hardware(
        cpu=cpu_model(),
        physical_cores=psutil.cpu_count(logical=False) or psutil.cpu_count() or 1,
        logical_cores=psutil.cpu_count(logical=True) or 1,
        ram_mb=psutil.virtual_memory().total / 2**20,
        os=f"{platform.system()} {platform.release()}",
        gpus=tuple(list_gpus()),
    )
