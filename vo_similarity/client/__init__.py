"""The astronomer's client of a vo-similarity service, in the style of astroquery.

Query a DaCHS that publishes image similarity (``vo-similarity publish``)
from Python::

    from vo_similarity.client import Similarity, conf

    conf.server = "http://127.0.0.1:8080"               # the default
    similar = Similarity.query_similar("stellarium/m1dumont", n=10)
    Similarity.query_similar("stellarium/m1dumont", get_query_payload=True)  # the ADQL

Settings live in astropy's configuration system (``conf``, also readable from
``~/.astropy/config/vo_similarity.cfg``); :class:`SimilarityClass` holds the
methods and :data:`Similarity` is the module's ready instance.  This package
needs neither torch nor a database driver: only astropy, astroquery, pyvo,
numpy and requests (plus onnxruntime for :meth:`SimilarityClass.query_image`).
"""

from astropy import config as _config


class Conf(_config.ConfigNamespace):
    """Configuration parameters for :mod:`vo_similarity.client`."""

    server = _config.ConfigItem(
        "http://127.0.0.1:8080",
        "Base URL of the DaCHS server that publishes the similarity service "
        "(its TAP service is <server>/tap).")
    timeout = _config.ConfigItem(
        60, "Seconds to wait for the server to answer a request.", cfgtype="float")
    row_limit = _config.ConfigItem(
        1000, "Maximum number of rows of a region or object query.", cfgtype="integer")
    default_model = _config.ConfigItem(
        "", "Model used when a method gets model=None: a name or a model_id of "
            "similarity.models; empty means the first published model (lowest model_id), "
            "and for query_similar and query_region's neighbours that of each query "
            "image's collection.")


conf = Conf()

from .core import Similarity, SimilarityClass

__all__ = ["Conf", "Similarity", "SimilarityClass", "conf"]
