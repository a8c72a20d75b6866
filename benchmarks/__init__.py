"""Reproducible benchmarks; each prints its figures and can write them to a JSON file."""
