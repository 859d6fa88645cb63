"""``SimilarityClass``: the queries of a vo-similarity service (astroquery style).

Every query method takes keyword-only options and ``get_query_payload``; with
``get_query_payload=True`` it returns what it would send and sends no query:

* a pure TAP query returns its ADQL string (:meth:`~SimilarityClass.query_similar`,
  :meth:`~SimilarityClass.query_region`, :meth:`~SimilarityClass.query_object`,
  :meth:`~SimilarityClass.query_outliers`);
* a TAP query with an upload (:meth:`~SimilarityClass.join_archive`) returns
  ``{"tap_url": str, "adql": str, "uploads": {name: Table}}``;
* a search through the server's vector search followed by a TAP query
  (:meth:`~SimilarityClass.refine`, :meth:`~SimilarityClass.query_vector`,
  :meth:`~SimilarityClass.query_image`) returns ``{"search": {"url": str,
  "data": [(key, value), ...]}, "tap_url": str, "adql": str, "uploads":
  {"hits": Table}}``, where ``hits`` is still empty: the search's results
  fill it (:func:`vo_similarity.client.search.hits_table`).

What a payload still needs from the server is metadata that is read once and
cached: the published models (``similarity.models``) where a model is
involved, the model's weights for :meth:`~SimilarityClass.query_image`, and
the service's target names for :meth:`~SimilarityClass.query_object`, which
resolves its name first.

Results are astropy Tables with the units, UCDs and descriptions the service
declares.  Bad input raises :class:`~astroquery.exceptions.InvalidQueryError`
before anything is sent; the server's own refusals come through as pyvo's
:class:`~pyvo.dal.DALQueryError` with its message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import requests
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astroquery.exceptions import InvalidQueryError
from astroquery.query import BaseQuery
from pyvo.dal import TAPService

from . import adql as q
from . import conf
from .download import download_rows
from .models import Model, ModelCatalogue
from .resolve import pick_target, resolve_elsewhere
from .samp import SampMixin
from .search import hits_table, search_request, send_search
from .validate import (
    check_coordinates,
    check_id,
    check_ids,
    check_n,
    check_radius,
    check_url,
    check_vector,
)

__all__ = ["Similarity", "SimilarityClass"]

log = logging.getLogger(__name__)


class _Session(requests.Session):
    """A requests session whose requests time out after ``conf.timeout`` unless told otherwise.

    pyvo sends its requests without a timeout; this gives them the client's.
    """

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", float(conf.timeout))
        return super().request(method, url, *args, **kwargs)


class SimilarityClass(SampMixin, BaseQuery):
    """Queries of a vo-similarity service: similar images, refinement, regions, downloads.

    Args:
        server: base URL of the DaCHS server; None (the default) follows
            ``conf.server`` at every call.
    """

    def __init__(self, *, server: str | None = None) -> None:
        super().__init__()
        session = _Session()
        session.headers.update(self._session.headers)
        session.hooks["response"] = list(self._session.hooks["response"])
        self._session = session
        self._server = None if server is None else check_url(server, name="server")
        self._catalogues: dict[str, ModelCatalogue] = {}
        self._runtimes: dict[tuple[str, int], object] = {}

    # -- the service -------------------------------------------------------------
    @property
    def server(self) -> str:
        """Base URL of the server queried now."""
        return self._server or check_url(conf.server, name="conf.server")

    @property
    def tap_url(self) -> str:
        return f"{self.server}/tap"

    def _tap(self, tap_url: str | None = None) -> TAPService:
        return TAPService(tap_url or self.tap_url, session=self._session)

    def query_tap(self, adql: str, *, uploads: dict[str, Table] | None = None,
                  tap_url: str | None = None, maxrec: int | None = None) -> Table:
        """Run ``adql`` on the service's TAP (or on ``tap_url``); the rows as a Table.

        Raises:
            pyvo.dal.DALQueryError: the service refused the query (its message).
        """
        log.debug("TAP %s:\n%s", tap_url or self.tap_url, adql)
        result = self._tap(tap_url).run_sync(adql, uploads=uploads, maxrec=maxrec)
        return result.to_table()

    def list_models(self) -> Table:
        """The published models (``similarity.models``), read once per server."""
        return self._catalogue().table

    def _catalogue(self) -> ModelCatalogue:
        server = self.server
        if server not in self._catalogues:
            self._catalogues[server] = ModelCatalogue(self.query_tap(q.model_query()))
        return self._catalogues[server]

    def _model(self, model: str | int | None, collection: str | None = None) -> Model:
        return self._catalogue().resolve(model, conf.default_model, collection=collection)

    def list_collections(self) -> list[str]:
        """The collections the server publishes (``obs_collection``), in model order."""
        return self._catalogue().collections

    # -- similar images of a published one ------------------------------------------
    def query_similar(self, did: str, *, n: int = 20, model: str | int | None = None,
                      exclude_same_target: u.Quantity | None = None,
                      get_query_payload: bool = False) -> Table | str:
        """The ``n`` images most similar to a published one, most similar first.

        Args:
            did: the image's ``obs_publisher_did`` (``ivo://...``) or ``obs_id``.
            n: how many (1..1000).
            model: model name or ``model_id`` (default ``conf.default_model``,
                and where that is empty the default model of the image's own
                collection: its first published one).
            exclude_same_target: leave out images whose centre lies within this
                angle of the query image's (e.g. ``1 * u.deg``).
            get_query_payload: return the ADQL instead of running it.

        Returns:
            One row per neighbour of ``similarity.similar_by_model``:
            ``model_id``, ``rank``, ``dist``, the query image's ``query_*``
            columns and the neighbour's ObsCore columns.

        Raises:
            InvalidQueryError: bad input, or an id the service does not publish
                (found out with one more query when the answer is empty).
        """
        did = check_id(did)
        n = check_n(n)
        radius = (None if exclude_same_target is None
                  else check_radius(exclude_same_target, name="exclude_same_target",
                                    allow_zero=True))
        adql = q.similar_query(did, self._default_model_of_each(model), n, radius)
        if get_query_payload:
            return adql
        table = self.query_tap(adql)
        if len(table) == 0:
            self._check_published(did)
        return table

    def _default_model_of_each(self, model: str | int | None) -> int | None:
        """The ``model_id`` for queries about images of any collection; None:
        each image's own collection's default model, left to the server
        (several collections, no model asked for, no ``conf.default_model``)."""
        if (model is None and not str(conf.default_model).strip()
                and len(self._catalogue().collections) > 1):
            return None
        return self._model(model).model_id

    def _check_published(self, did: str) -> None:
        if not len(self.query_tap(q.id_check_query(did))):
            raise InvalidQueryError(f"no published image has the obs_publisher_did or obs_id "
                                    f"{did!r} on {self.server}")

    # -- the server's vector search -----------------------------------------------
    def refine(self, similar: str | Iterable[str], *, not_similar: Iterable[str] = (),
               n: int = 20, model: str | int | None = None, beta: float = 0.5,
               get_query_payload: bool = False) -> Table | dict:
        """Images similar to all of ``similar`` and unlike ``not_similar`` (Rocchio).

        The server searches from the mean embedding of ``similar`` minus
        ``beta`` times the mean of ``not_similar``; the chosen images are left
        out of the results.

        Args:
            similar: one id or several (``obs_publisher_did`` or ``obs_id``).
            not_similar: ids of images marked not similar.
            n: how many results (1..1000).
            model: model name or ``model_id``.
            beta: weight of the rejected images, 0..1.
            get_query_payload: return the search request and the TAP step
                (module docstring) instead of sending them.

        Returns:
            ``rank``, ``score`` (cosine), ``dist`` and the ObsCore columns of
            each result, in rank order.
        """
        similar = check_ids(similar, name="similar", allow_empty=False)
        not_similar = check_ids(not_similar, name="not_similar", allow_empty=True)
        both = sorted(set(similar) & set(not_similar))
        if both:
            raise InvalidQueryError(f"{both} are in both similar and not_similar")
        n = check_n(n)
        if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0 <= beta <= 1:
            raise InvalidQueryError(f"beta must be a number from 0 to 1, got {beta!r}")
        request = search_request(self.server, self._model(model).model_id, n,
                                 similar=similar, not_similar=not_similar)
        request["data"].append(("beta", repr(float(beta))))
        return self._search(request, get_query_payload)

    def query_vector(self, vector, *, n: int = 20, model: str | int | None = None,
                     get_query_payload: bool = False) -> Table | dict:
        """Published images nearest to an embedding vector of the model.

        Args:
            vector: ``dim`` finite numbers (any length; the server normalises it).
            n, model, get_query_payload: as for :meth:`refine`.
        """
        n = check_n(n)
        m = self._model(model)
        if m.dim is None:
            raise InvalidQueryError(f"the server does not say the dimension of model "
                                    f"{m.name!r} (similarity.models.dim)")
        v = check_vector(vector, m.dim)
        return self._search(search_request(self.server, m.model_id, n, vectors=[v]),
                            get_query_payload)

    def query_image(self, image, *, n: int = 20, model: str | int | None = None,
                    get_query_payload: bool = False) -> Table | dict:
        """Published images similar to an image that need not be in the archive.

        The image is embedded here with the published model (its ONNX file,
        downloaded once, checked against the digest the server states, run with
        onnxruntime), then searched for on the server.

        Args:
            image: a FITS, PNG or JPEG file, or a 2-D (or H x W x 3) array.
            n, model, get_query_payload: as for :meth:`refine`.
        """
        from .embedding import image_pixels
        from .images import check_image

        image = check_image(image)
        n = check_n(n)
        m = self._model(model)
        self._check_weights(m)
        # read and preprocess first: a file that is no image fetches no model
        pixels = image_pixels(image, m.preprocess)
        vector = self._runtime(m).embed_pixels(pixels)
        return self.query_vector(vector, n=n, model=m.model_id,
                                 get_query_payload=get_query_payload)

    @staticmethod
    def _check_weights(m: Model) -> None:
        if not (m.weights_url and m.weights_sha256):
            raise InvalidQueryError(f"model {m.name!r} has no published weights "
                                    "(similarity.models.weights_url): it cannot embed "
                                    "new images; query by published images instead")

    def _runtime(self, m: Model):
        key = (self.server, m.model_id)
        if key not in self._runtimes:
            from .embedding import ModelRuntime

            self._runtimes[key] = ModelRuntime.fetch(m.weights_url, m.weights_sha256,
                                                     m.preprocess, timeout=float(conf.timeout))
        return self._runtimes[key]

    def _search(self, request: dict, get_query_payload: bool) -> Table | dict:
        adql = q.hits_query("hits")
        if get_query_payload:
            return {"search": request, "tap_url": self.tap_url, "adql": adql,
                    "uploads": {"hits": hits_table()}}
        answer = send_search(self._session, request, float(conf.timeout))
        return self.query_tap(adql, uploads={"hits": hits_table(answer)})

    # -- regions and targets -----------------------------------------------------
    def query_region(self, coordinates: SkyCoord | str, *, radius: u.Quantity,
                     neighbours: int = 0, model: str | int | None = None,
                     collection: str | None = None,
                     get_query_payload: bool = False) -> Table | str:
        """The published images whose centre lies within ``radius`` of a position.

        Args:
            coordinates: a SkyCoord, or ``"ra dec"`` (degrees or sexagesimal).
            radius: the cone's radius (an angle Quantity).
            neighbours: 0 for the images only; k > 0 for each image's k
                nearest neighbours as extra rows (see Returns).
            model: the model of the neighbours (default ``conf.default_model``;
                where that is empty, the first model of ``collection``, or
                without ``collection`` each image's by the first model of its
                own collection).
            collection: the images of this collection only (``obs_collection``;
                :meth:`list_collections`); default: every collection (with
                neighbours and a model named: the model's).
            get_query_payload: return the ADQL instead of running it.

        Returns:
            ``neighbours=0``: one row per image in the cone, its ObsCore
            columns and ``ang_sep`` (degrees from the centre), nearest first.
            ``neighbours=k``: one row per (image in the cone, rank 1..k):
            the image in the ``query_*`` columns, its neighbour in the others
            (``similarity.similar_by_model``), by ``ang_sep`` and then rank.  At most
            ``conf.row_limit`` rows (a warning says when cut).
        """
        ra, dec = check_coordinates(coordinates)
        radius_deg = check_radius(radius)
        k = check_n(neighbours, name="neighbours", low=0)
        top = check_n(int(conf.row_limit), name="conf.row_limit", high=10**7)
        if collection is not None:
            self._catalogue().check_collection(collection)
        if k == 0:
            adql = q.region_query(ra, dec, radius_deg, top,
                                  [collection] if collection else self.list_collections())
        else:
            model_id = (self._default_model_of_each(model) if collection is None
                        else self._model(model, collection).model_id)
            adql = q.region_similar_query(ra, dec, radius_deg, model_id, k, top)
        if get_query_payload:
            return adql
        table = self.query_tap(adql)
        if len(table) == top:
            log.warning("the answer has conf.row_limit = %d rows and may be cut", top)
        return table

    def query_object(self, name: str, *, radius: u.Quantity = 0.1 * u.deg,
                     neighbours: int = 0, model: str | int | None = None,
                     collection: str | None = None,
                     get_query_payload: bool = False) -> Table | str:
        """The published images around a named object (see :meth:`query_region`).

        The name is looked up first among the service's own target names
        (ignoring case and spaces: ``m1`` finds ``M 1``), and only then with
        Sesame (:meth:`astropy.coordinates.SkyCoord.from_name`), which needs
        the internet.  The lookup happens also with ``get_query_payload=True``;
        the cone query is then returned, not sent.

        Raises:
            InvalidQueryError: neither the service nor Sesame knows the name.
        """
        name = check_id(name, name="name").strip()
        check_radius(radius)
        check_n(neighbours, name="neighbours", low=0)
        position = pick_target(name, self.query_tap(q.target_lookup_query(name)))
        if position is None:
            position = resolve_elsewhere(name)
        coordinates = SkyCoord(*position, unit=u.deg, frame="icrs")
        return self.query_region(coordinates, radius=radius, neighbours=neighbours,
                                 model=model, collection=collection,
                                 get_query_payload=get_query_payload)

    def query_outliers(self, *, n: int = 20, model: str | int | None = None,
                       get_query_payload: bool = False) -> Table | str:
        """The ``n`` most unusual images (largest outlier score), with their ObsCore columns."""
        n = check_n(n)
        adql = q.outliers_query(self._model(model).model_id, n)
        return adql if get_query_payload else self.query_tap(adql)

    # -- files and other archives ----------------------------------------------------
    def download_images(self, table: Table, *, path: str | Path | None = None,
                        cache: bool = True, show_progress: bool = True) -> list[Path]:
        """Download the image file (``access_url``) of every row, with a progress bar.

        Args:
            table: a result of this client (any table with ``access_url``).
            path: the folder (created if missing); default: the astroquery
                cache folder of this module (``cache_location / "images"``).
            cache: keep files already there instead of downloading them again.
            show_progress: show the progress bar.

        Returns:
            The local files, in row order, named after each row's ``obs_id``
            (:func:`vo_similarity.client.download.file_name`).
        """
        if not isinstance(table, Table):
            raise InvalidQueryError(f"table must be an astropy Table, got {type(table).__name__}")
        folder = Path(path) if path is not None else self.cache_location / "images"
        if folder.exists() and not folder.is_dir():
            raise InvalidQueryError(f"path {folder} exists and is not a folder")
        return download_rows(self._session, table, folder, cache=cache,
                             timeout=float(conf.timeout), show_progress=show_progress)

    def join_archive(self, table: Table, tap_url: str, *, radius: u.Quantity,
                     obscore_table: str = "ivoa.obscore",
                     get_query_payload: bool = False) -> Table | dict:
        """Another archive's observations of the same sky as the rows of ``table``.

        The rows' positions (``s_ra``, ``s_dec``; rows without are skipped)
        are uploaded to the other TAP service and joined with its ObsCore
        table by ``CONTAINS``.

        Args:
            table: a result of this client.
            tap_url: the other archive's TAP service.
            radius: how far from a row's centre an observation may be.
            obscore_table: the other service's ObsCore(-like) table.
            get_query_payload: return ``{"tap_url", "adql", "uploads"}`` instead.

        Returns:
            One row per (row of ``table``, observation within ``radius``):
            ``our_row`` (index into ``table``), ``our_did``, ``ang_sep``
            (degrees) and the other table's columns, by ``our_row`` then
            ``ang_sep``.  At most ``conf.row_limit`` rows.
        """
        tap_url = check_url(tap_url, name="tap_url")
        radius_deg = check_radius(radius)
        adql = q.join_query(obscore_table, radius_deg, "mine")
        uploads = {"mine": q.positions_upload(table)}
        if get_query_payload:
            return {"tap_url": tap_url, "adql": adql, "uploads": uploads}
        return self.query_tap(adql, uploads=uploads, tap_url=tap_url,
                              maxrec=int(conf.row_limit))


#: The module's ready instance, following ``conf.server``.
Similarity = SimilarityClass()
