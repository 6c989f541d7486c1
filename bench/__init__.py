"""Benchmark suite: `make bench` (full) and `make bench-quick` (small sizes). Entry point: bench/run.py."""
