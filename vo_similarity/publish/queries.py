"""ADQL that users copy: the queries `vo-similarity publish` prints.

The same queries, with image_id 0 and model_id 1, are the RD's TAP examples.  ADQL details
that bite: ``distance`` is a reserved word (our column is ``dist``), and ADQL
2.0 wants ``ORDER BY rank`` rather than ``ORDER BY n.rank``.
"""

from __future__ import annotations

__all__ = ["adql_string", "similar_images_join", "similar_images_query"]


def adql_string(value: str) -> str:
    """Quote ``value`` as an ADQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def similar_images_query(did: str, model_id: int | None = None, top: int = 20) -> str:
    """The ``top`` images most similar to ``did`` with their ObsCore columns.

    The short form: the view ``similarity.similar`` (the default model of the
    image's collection, one row per query image and rank, carrying the
    neighbour's ObsCore columns), or ``similarity.similar_by_model`` for a
    given model.

    Args:
        did: the publisher DID of the query image (``ivoa.obscore.obs_publisher_did``).
        model_id: which model's neighbours (``similarity.models.model_id``);
            None: the default model of the image's collection (its lowest
            ``model_id``).
        top: how many neighbours, most similar first.

    Returns:
        An ADQL statement that runs as it is in TOPCAT, STILTS or pyvo.  It has
        as few comparisons as it can: DaCHS spends ~4-8 ms parsing each one
        (pyparsing), more than PostgreSQL then needs to sort the image's k
        neighbours itself (~3 ms at k = 1000; docs/publish.md), hence no
        ``rank <= top`` beside ``TOP`` and a view that needs no ``model_id``.
    """
    if model_id is None:
        return (f"SELECT TOP {int(top)} * FROM similarity.similar\n"
                f"WHERE query_did = {adql_string(did)}\nORDER BY rank")
    return (
        f"SELECT TOP {int(top)} * FROM similarity.similar_by_model\n"
        f"WHERE query_did = {adql_string(did)} AND model_id = {int(model_id)}\n"
        "ORDER BY rank"
    )


def similar_images_join(did: str, model_id: int, top: int = 20) -> str:
    """The long form of :func:`similar_images_query`: ``neighbours`` joined with
    ``ivoa.obscore``, the pattern to start from for queries the view does not
    cover (other ObsCore columns, another archive's ObsCore table)."""
    return (
        f"SELECT TOP {int(top)} n.rank, n.dist, o.obs_publisher_did, o.target_name, "
        "o.s_ra, o.s_dec, o.access_url, o.preview\n"
        "FROM similarity.neighbours AS n\n"
        "JOIN ivoa.obscore AS o ON o.obs_publisher_did = n.neighbour_did\n"
        f"WHERE n.obs_publisher_did = {adql_string(did)} AND n.model_id = {int(model_id)}\n"
        f"  AND n.rank <= {int(top)}\n"
        "ORDER BY rank"
    )
