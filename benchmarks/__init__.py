"""Benchmarks of raccoon-beam: ``python -m benchmarks.run`` (see README.md here)."""
