"""Tests of vo_similarity.selections (a package: tests/evaluate has a test_metrics.py too)."""
