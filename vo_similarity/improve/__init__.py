"""Continuous improvement of a published model from recorded selections (docs/selections.md)."""

from vo_similarity.improve.improve import ImproveBusy, ImproveOptions, ImproveResult, improve

__all__ = ["ImproveBusy", "ImproveOptions", "ImproveResult", "improve"]
