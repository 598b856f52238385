"""What a child is asked to do: the spec, written as JSON into the child's folder.

The child reads a plain dict (objectives/child.py); the parent builds a typed spec and
serializes it with `to_json_dict()` in one place. The study's trial spec is here; the probe's
and the soak's live with their children (objectives/probe.py, objectives/soak_child.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class ChildSpec(Protocol):
    """Anything a launcher can hand a child: it becomes the child's spec.json."""

    def to_json_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TrialSpec:
    """One measurement of one settings candidate (objectives.child): load the model with
    `params` (llama_cpp.Llama keyword arguments) and run `workload` (Workload.spec's dict)."""

    model_path: str
    params: dict[str, Any]
    workload: dict[str, Any]

    @classmethod
    def of(cls, model: Path | str, params: dict[str, Any], workload: dict[str, Any]) -> TrialSpec:
        return cls(str(model), dict(params), dict(workload))

    def to_json_dict(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "params": self.params, "workload": self.workload}
