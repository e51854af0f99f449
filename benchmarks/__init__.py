"""Benchmarks for merge-job: planning at scale, overhead, start-up, peers, node-aware parallelism.

Each module runs with one command (`python -m benchmarks.<name>`), prints a table and writes
JSON under benchmarks/results/. See docs/benchmarks.md.
"""
