"""Benchmarks of fastapi_corpauth against baselines measured in the same run (not tests)."""
