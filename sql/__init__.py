"""The SQL applied by ``vo-similarity publish``, shipped in the wheel as ``vo_similarity.sql``.

A package only so that it travels with the code (pyproject.toml maps it); it
holds no Python. ``vo_similarity.resources`` finds its files.
"""
