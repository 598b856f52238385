"""Probe the installed llama-cpp-python on the model before a study (runs in a trial child).

Tokenizes the workload (to size n_ctx), reports the build's abilities, and decodes a couple of
tokens on the CPU so that a build that crashes on this machine is caught before any trial.
"""

from __future__ import annotations

from typing import Any

from objectives.measure import phase


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    import llama_cpp

    info: dict[str, Any] = {
        "ok": True,
        "llama_cpp_version": llama_cpp.__version__,
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
    }
    phase("tokenize")
    vocab = llama_cpp.Llama(model_path=spec["model_path"], vocab_only=True, verbose=False)
    info["n_tokens"] = [
        len(vocab.tokenize(t.encode("utf-8"), add_bos=True, special=True)) for t in spec["texts"]
    ]
    del vocab
    if spec.get("smoke", True):
        phase("smoke load")
        llm = llama_cpp.Llama(model_path=spec["model_path"], **spec["smoke_params"], verbose=False)
        phase("smoke decode")
        tokens = llm.tokenize(b"Bonjour", add_bos=True, special=True)
        for i, _ in enumerate(llm.generate(tokens, temp=0.0)):
            if i >= 1:
                break
        phase("smoke done")
    return info
