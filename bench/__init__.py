"""Benchmark scripts: run each as ``python -m bench.<name>`` from the repository root (docs/benchmarks.md).

Every script ends with a machine-readable line of ``key=value`` figures; ``tests/bench`` runs each
one on a small case so that none of them rots.
"""
