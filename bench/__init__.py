"""Benchmarks of mgdl_fast (pytest-benchmark); sizes from bench/shapes.py."""
