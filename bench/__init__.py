"""Benchmarks of a real sipmediagw gateway (issue 4): `python3 -m bench.run`, results in docs/benchmarks.md."""
