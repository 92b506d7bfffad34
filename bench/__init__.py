"""Benchmarks: what the agent costs a node and how fast the governor is, measured side by side.

Run with `make bench` (or `python -m bench --help`). Results go to bench/results/<date>-<name>.json
and are summarised in bench/README.md. Never run by `make test`: figures are not asserted.
"""
