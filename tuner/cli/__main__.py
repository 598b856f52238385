"""`python -m tuner.cli`: the same as the `dm-tune` command."""

from tuner.cli import main

main()
