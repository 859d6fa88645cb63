"""The DaCHS resource directory, shipped in the wheel as ``vo_similarity.resdir``.

A package only so that it travels with the code (pyproject.toml maps it); it
holds no Python. ``vo_similarity.resources`` finds its files.
"""
