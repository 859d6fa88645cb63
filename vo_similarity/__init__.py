"""vo-similarity: "show me images like this one" for astronomy archives.

Self-supervised, affine-invariant image embeddings (SimCLR), exact top-k
neighbours, published as an ADQL join in GAVO DaCHS.
"""

__version__ = "0.1.0"
