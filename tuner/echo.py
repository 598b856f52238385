"""How library code reports progress lines: a function the caller passes in.

The CLI passes `typer.echo`, tests a list's `append`, library callers default to `print`. One
definition, importable from every layer (it imports nothing of dm-tune)."""

from collections.abc import Callable

Echo = Callable[[str], None]
