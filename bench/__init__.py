"""Benchmarks: `make bench` (python -m bench) prints a markdown table of ratios."""
