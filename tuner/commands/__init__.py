"""One module per CLI command; each parses arguments and calls one library function."""
