"""Benchmarks of the Trygg gateway; `bench/ingest` runs the ingest benchmark."""
