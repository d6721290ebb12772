"""Benchmarks: `make bench` / `python -m bench [NAME...]`. Each prints JSON lines {name, value, unit}."""
