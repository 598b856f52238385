"""scripts/make_gguf.py writes GGUFs that llama.cpp loads, with the demo's real tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFReader

from tuner.bench.make_gguf import SHAPES, _tensor_specs, write_llama_gguf
from tuner.vram import read_gguf


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, demo_model: Path) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return write_llama_gguf(path, **SHAPES["tiny"]._asdict(), tokenizer_from=demo_model)


def test_tiny_has_the_requested_shape(tiny: Path) -> None:
    info = read_gguf(tiny)
    assert (info.architecture, info.block_count, info.embedding_length) == ("llama", 2, 64)
    assert (info.head_count, info.head_count_kv, info.context_length) == (4, 2, 2048)
    assert info.feed_forward_length == 128
    assert info.quantization == "Q4_0"
    assert info.vocab_size == 49152
    names = {t.name for t in info.tensors}
    assert {"token_embd.weight", "output.weight", "output_norm.weight"} <= names
    assert "blk.1.ffn_down.weight" in names


def test_tokenizer_is_copied_from_the_source(tiny: Path, demo_model: Path) -> None:
    src, dst = GGUFReader(demo_model), GGUFReader(tiny)
    keys = [k for k in src.fields if k.startswith("tokenizer.")]
    assert "tokenizer.chat_template" in keys and "tokenizer.ggml.merges" in keys
    for key in keys:
        assert dst.fields[key].contents() == src.fields[key].contents(), key


def test_mistral_7b_shape_is_about_4_gb_at_q4_0() -> None:
    specs = _tensor_specs(SHAPES["mistral-7b"], 32000, "Q4_0")
    n_bytes = 0
    for _name, ne, q in specs:
        n = 1
        for d in ne:
            n *= d
        n_bytes += n * 18 // 32 if q == "Q4_0" else n * 4
    assert 3.7e9 < n_bytes < 4.1e9
    assert len(specs) == 3 + 32 * 9


def test_bad_shape_is_refused(tmp_path: Path, demo_model: Path) -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        write_llama_gguf(
            tmp_path / "x.gguf",
            blocks=1,
            hidden=48,
            ffn=96,
            heads=4,
            kv_heads=2,
            context_length=512,
            tokenizer_from=demo_model,
        )


@pytest.mark.slow
def test_tiny_loads_and_generates_in_llama_cpp(tiny: Path) -> None:
    from llama_cpp import Llama

    llm = Llama(model_path=str(tiny), n_ctx=256, n_threads=1, verbose=False)
    out = llm("Bonjour Kira", max_tokens=4, temperature=0.0)
    assert out["usage"]["completion_tokens"] >= 1
    assert isinstance(out["choices"][0]["text"], str)
