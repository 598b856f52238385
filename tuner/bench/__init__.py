"""Research commands, not part of `dm-tune`: each module is a command with `--help` and a
`main(argv) -> int`, run as `python scripts/<name>.py` (a thin wrapper) and used for
docs/benchmarks. Tested on the CPU where it can be (tests/bench/)."""
