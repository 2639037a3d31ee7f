"""The benchmark harness (``fdem bench``, ``fdem speed``, ``fdem kernel-bench``), installed as ``fdem.benchmarks``.

The one-off studies and checks behind README's numbers live in ``studies/`` at the repository root,
which is not installed and which nothing here imports.
"""
