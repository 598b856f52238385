"""Parse sizes such as '6GB', '5.5 GiB', '6000MB' (into MiB, as NVML and llama.cpp report)."""

from __future__ import annotations

import re

from tuner.errors import UserError

_UNITS = {"": 1024.0, "g": 1024.0, "gb": 1024.0, "gib": 1024.0, "m": 1.0, "mb": 1.0, "mib": 1.0}


def parse_size_mb(text: str) -> float:
    """'6GB' -> 6144.0. GB and GiB are both taken as 1024 MiB: GPU makers' '6 GB' means 6 GiB."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise UserError(f"bad size {text!r}; write it like 6GB, 5.5GB or 5000MB")
    value = float(m.group(1)) * _UNITS[unit]
    if value <= 0:
        raise UserError(f"bad size {text!r}: it must be above zero")
    return value
