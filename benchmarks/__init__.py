"""Benchmarks: one module per area, each with ``run(quick=False) -> str`` (a markdown section).

``./dev bench`` (``python -m benchmarks``) runs them all and writes ``docs/benchmarks.md``;
targets are compared as ratios within one run, because the machines are shared and noisy.
"""
