"""Probe the installed llama-cpp-python on the model before a study (runs in a trial child).

Tokenizes the workload (to size n_ctx), reports the build's abilities, and decodes a prompt of
one full batch and a couple of tokens with no layer offloaded, so that a build that crashes on
this machine is caught before any trial. On a GPU build the full batch runs its products on the
GPU (op offload) as every trial's prompt does, so the VRAM the parent reads holds what the
study's predictor can't tell from the GGUF (CUDA context, cuBLAS, the CUDA pool).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from objectives import phases
from objectives.phases import phase


@dataclass(frozen=True)
class ProbeSpec:
    """The probe's spec (a trial child with `"probe": true` runs `probe` instead of a trial):
    the texts to tokenize, and whether to smoke-test a load and decode with `smoke_params`."""

    model_path: str
    texts: tuple[str, ...]
    smoke: bool = True
    smoke_params: dict[str, Any] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "probe": True,
            "model_path": self.model_path,
            "texts": list(self.texts),
            "smoke": self.smoke,
            "smoke_params": self.smoke_params,
        }


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    import llama_cpp

    info: dict[str, Any] = {
        "ok": True,
        "llama_cpp_version": llama_cpp.__version__,
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
    }
    phase(phases.TOKENIZE)
    vocab = llama_cpp.Llama(model_path=spec["model_path"], vocab_only=True, verbose=False)
    info["n_tokens"] = [
        len(vocab.tokenize(t.encode("utf-8"), add_bos=True, special=True)) for t in spec["texts"]
    ]
    del vocab
    if spec.get("smoke", True):
        phase(phases.SMOKE_LOAD)
        llm = llama_cpp.Llama(model_path=spec["model_path"], **spec["smoke_params"], verbose=False)
        phase(phases.SMOKE_DECODE)
        n_batch = int(spec["smoke_params"].get("n_batch", 32))
        tokens = llm.tokenize(b"Bonjour ! " * n_batch, add_bos=True, special=True)[:n_batch]
        for i, _ in enumerate(llm.generate(tokens, temp=0.0)):
            if i >= 1:
                break
        phase(phases.SMOKE_DONE)
    return info
