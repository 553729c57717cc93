"""The thin command-line layer: parse, call the core, print. Nothing here computes."""
