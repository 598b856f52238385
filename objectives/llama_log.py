"""Capture llama.cpp's own log lines in the trial child (the library's log callback)."""

from __future__ import annotations

import ctypes
import re
import sys
from typing import Any, TextIO

# Text llama.cpp / CUDA print when memory runs out (the load or a decode then fails).
FAILURE_TAIL_CHARS = 4000  # the end of the log a failed child reports (where the error is)
OOM_MARKERS = ("out of memory", "failed to allocate", "cudamalloc failed", "unable to allocate")


def looks_oom(text: str) -> bool:
    low = text.lower()
    return any(m in low for m in OOM_MARKERS)


# Lines worth keeping with a trial: buffer sizes, offload decisions, errors.
RELEVANT = re.compile(
    r"buffer size|offload|error|failed|warning|CUDA|flash_attn|n_ctx|type_k", re.I
)


class LogCapture:
    """Collects every llama.cpp / ggml log line while installed; keeps the C callback alive.

    A line that says memory ran out is also written to `echo` (the child's stderr) at once:
    a CUDA allocation failing inside a decode aborts the process before the collected lines
    can be returned, and the parent can then still tell an out-of-memory from a crash."""

    def __init__(self, echo: TextIO | None = None) -> None:
        self.lines: list[str] = []
        self._partial = ""
        self._cb: Any = None
        self._echo = echo

    def feed(self, text: str) -> None:
        """One chunk of llama.cpp's log (lines may arrive in pieces)."""
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self.lines.append(line)
            if self._echo is not None and looks_oom(line):
                print(f"llama.cpp: {line.strip()}", file=self._echo, flush=True)

    def install(self) -> None:
        import llama_cpp

        def _callback(level: int, text: bytes | None, user_data: ctypes.c_void_p) -> None:
            if text:
                self.feed(text.decode("utf-8", errors="replace"))

        if self._echo is None:
            self._echo = sys.stderr
        self._cb = llama_cpp.llama_log_callback(_callback)
        llama_cpp.llama_log_set(self._cb, ctypes.c_void_p(0))

    def text(self) -> str:
        return "\n".join([*self.lines, self._partial]).strip()

    def relevant(self) -> str:
        """Only the lines that matter for VRAM accounting and diagnosis (keeps storage small)."""
        return "\n".join(ln for ln in [*self.lines, self._partial] if RELEVANT.search(ln))
