"""Read what dm-tune needs from a GGUF file's header, and reject files that are not usable GGUF."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.errors import UserError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type_name: str
    n_bytes: int
    shape: tuple[int, ...]


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    size_bytes: int
    architecture: str
    block_count: int
    context_length: int | None
    embedding_length: int | None
    head_count: int | None
    head_count_kv: int | None
    key_length: int | None
    value_length: int | None
    vocab_size: int | None
    file_type: int | None
    name: str | None
    quantization: str
    tensors: tuple[TensorInfo, ...] = field(repr=False, default=())
    feed_forward_length: int | None = None

    @property
    def offloadable_layers(self) -> int:
        """llama.cpp counts the repeating blocks plus the output layer."""
        return self.block_count + 1


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return None
    return f.contents()


def _quantization(tensors: tuple[TensorInfo, ...]) -> str:
    """The dominant weight type among 2-D tensors, e.g. 'Q4_1' (what the file is 'quantized as')."""
    counts: dict[str, int] = {}
    for t in tensors:
        if len(t.shape) >= 2:
            counts[t.type_name] = counts.get(t.type_name, 0) + t.n_bytes
    return max(counts, key=lambda k: counts[k]) if counts else "unknown"


def _check_file(path: Path) -> int:
    """The file's size, once it is known to exist and to start with GGUF's magic bytes."""
    if not path.exists():
        raise UserError(f"model file not found: {path} (check the --model path)")
    if not path.is_file():
        raise UserError(f"model path is not a file: {path} (give the path of a .gguf file)")
    size = path.stat().st_size
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise UserError(
            f"{path.name} is not a GGUF file (no GGUF magic bytes); "
            "convert the model with llama.cpp's convert_hf_to_gguf.py or download a .gguf build"
        )
    return size


def _open_reader(path: Path) -> Any:
    from gguf import GGUFReader

    try:
        return GGUFReader(path)
    except Exception as exc:  # the reader raises many types on corrupt input
        raise UserError(
            f"{path.name} is a damaged GGUF file ({type(exc).__name__}: {exc}); "
            "it is probably truncated: download it again"
        ) from None


def _tensors(reader: Any, path: Path, size: int) -> tuple[TensorInfo, ...]:
    """The file's tensors; refuse a file too short to hold them."""
    tensors = tuple(
        TensorInfo(t.name, t.tensor_type.name, int(t.n_bytes), tuple(int(x) for x in t.shape))
        for t in reader.tensors
    )
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise UserError(
            f"{path.name} is truncated ({size} bytes, its tensors need {end}); download it again"
        )
    return tensors


def _model_keys(reader: Any, path: Path) -> tuple[str, int]:
    """The architecture and block count that make the file a model GGUF."""
    arch = _field(reader, "general.architecture")
    if not isinstance(arch, str):
        raise UserError(f"{path.name} has no general.architecture key; it is not a model GGUF")
    block_count = _field(reader, f"{arch}.block_count")
    if not isinstance(block_count, int) or block_count <= 0:
        raise UserError(f"{path.name} has no valid {arch}.block_count; it is not a model GGUF")
    return arch, int(block_count)


def read_gguf(path: Path) -> GGUFInfo:
    """Parse a GGUF header; raise UserError with a fix when the file is missing or unusable."""
    path = Path(path).expanduser()
    size = _check_file(path)
    reader = _open_reader(path)
    tensors = _tensors(reader, path, size)
    arch, block_count = _model_keys(reader, path)

    def opt_int(key: str) -> int | None:
        v = _field(reader, f"{arch}.{key}")
        return int(v) if isinstance(v, int) else None

    vocab = opt_int("vocab_size")
    if vocab is None:
        tokens = reader.fields.get("tokenizer.ggml.tokens")
        vocab = len(tokens.data) if tokens is not None else None
    ft = _field(reader, "general.file_type")
    name = _field(reader, "general.name")
    return GGUFInfo(
        path=path.resolve(),
        size_bytes=size,
        architecture=arch,
        block_count=block_count,
        context_length=opt_int("context_length"),
        embedding_length=opt_int("embedding_length"),
        head_count=opt_int("attention.head_count"),
        head_count_kv=opt_int("attention.head_count_kv"),
        key_length=opt_int("attention.key_length"),
        value_length=opt_int("attention.value_length"),
        vocab_size=vocab,
        file_type=int(ft) if isinstance(ft, int) else None,
        name=name if isinstance(name, str) else None,
        quantization=_quantization(tensors),
        tensors=tensors,
        feed_forward_length=opt_int("feed_forward_length"),
    )
