"""Capture llama.cpp's own log lines in the trial child (the library's log callback)."""

from __future__ import annotations

import ctypes
from typing import Any


class LogCapture:
    """Collects every llama.cpp / ggml log line while installed; keeps the C callback alive."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = ""
        self._cb: Any = None

    def install(self) -> None:
        import llama_cpp

        def _callback(level: int, text: bytes | None, user_data: ctypes.c_void_p) -> None:
            if not text:
                return
            self._partial += text.decode("utf-8", errors="replace")
            while "\n" in self._partial:
                line, self._partial = self._partial.split("\n", 1)
                self.lines.append(line)

        self._cb = llama_cpp.llama_log_callback(_callback)
        llama_cpp.llama_log_set(self._cb, ctypes.c_void_p(0))

    def text(self) -> str:
        return "\n".join([*self.lines, self._partial]).strip()
