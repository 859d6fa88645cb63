"""The published models of a server: read once from ``similarity.models``, then looked up.

A model is named by its ``name``, by ``"collection/name"`` (where several
collections have a model of that name), or by its ``model_id`` (an int, or a
string of digits); ``None`` means ``conf.default_model``, and an empty default
the first published model (lowest ``model_id``: the TAP examples'
``model_id = 1``), or the first of the collection asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table
from astroquery.exceptions import InvalidQueryError

# a light module: the name of the one collection of a server published before
# collections (whose models table has no such column)
from vo_similarity.publish.collections import DEFAULT_COLLECTION

__all__ = ["Model", "ModelCatalogue"]


def _cell(row, name: str, default=None):
    """A row's value, ``default`` where the column is missing or the value masked."""
    if name not in row.colnames:
        return default
    value = row[name]
    if value is np.ma.masked or (isinstance(value, np.ma.MaskedArray) and value.mask.all()):
        return default
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class Model:
    """One row of ``similarity.models``, as the client uses it.

    Attributes:
        model_id: key of the model in the service's tables and services.
        name: its name.
        dim: embedding dimension (None where the server does not publish it).
        weights_url: the ONNX file of the embedding (None: no weights published).
        weights_sha256: hex SHA-256 of that file.
        preprocess: how a raw image becomes the model's input (PreprocessConfig fields).
        collection: the collection whose images its neighbours are (obs_collection).
    """

    model_id: int
    name: str
    collection: str = DEFAULT_COLLECTION
    dim: int | None = None
    weights_url: str | None = None
    weights_sha256: str | None = None
    preprocess: dict = field(default_factory=dict)

    @classmethod
    def from_row(cls, row) -> Model:
        preprocess = _cell(row, "preprocess")
        try:
            preprocess = json.loads(preprocess) if preprocess else {}
        except json.JSONDecodeError:
            preprocess = {}
        dim = _cell(row, "dim")
        return cls(model_id=int(row["model_id"]), name=str(row["name"]),
                   collection=str(_cell(row, "collection") or DEFAULT_COLLECTION),
                   dim=None if dim is None else int(dim),
                   weights_url=_cell(row, "weights_url") or None,
                   weights_sha256=_cell(row, "weights_sha256") or None,
                   preprocess=preprocess)


class ModelCatalogue:
    """The models of one server, looked up by name or id."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.models = [Model.from_row(row) for row in table]

    def describe(self) -> str:
        """The published models, for messages (``collection/name`` where several
        collections are published)."""
        several = len(self.collections) > 1
        return ", ".join((f"{m.collection}/{m.name}" if several else repr(m.name))
                         + f" (model_id {m.model_id})" for m in self.models) or "none"

    @property
    def collections(self) -> list[str]:
        """The collections that have a published model, in model_id order."""
        return list(dict.fromkeys(m.collection for m in self.models))

    def check_collection(self, collection) -> None:
        """Raise InvalidQueryError unless the server publishes ``collection``."""
        if collection not in self.collections:
            raise InvalidQueryError(
                f"unknown collection {collection!r}; the server publishes "
                f"{', '.join(map(repr, self.collections)) or 'none'}")

    def resolve(self, model: str | int | None, default: str | int = "", *,
                collection: str | None = None) -> Model:
        """The model named by ``model`` (else by ``default``, else the first one),
        of ``collection`` where given.

        Raises:
            InvalidQueryError: no such model (the message lists the published
                ones), a name that several collections use, a model of another
                collection than ``collection``, or the server publishes none.
        """
        wanted = default if model is None else model
        if not self.models:
            raise InvalidQueryError("the server publishes no model yet "
                                    "(similarity.models is empty)")
        if collection is not None:
            self.check_collection(collection)
        if isinstance(wanted, str) and not wanted.strip():
            return min((m for m in self.models if collection in (None, m.collection)),
                       key=lambda m: m.model_id)
        if isinstance(wanted, bool) or not isinstance(wanted, str | int | np.integer):
            raise InvalidQueryError(f"model must be a name or a model_id, got {wanted!r}")
        found = self._named(wanted, collection)
        if found is not None:
            return found
        as_id = str(wanted).strip()
        if as_id.isdigit():
            for m in self.models:
                if m.model_id == int(as_id):
                    if collection not in (None, m.collection):
                        raise InvalidQueryError(
                            f"model {m.model_id} is of collection {m.collection!r}, "
                            f"not {collection!r}")
                    return m
        raise InvalidQueryError(f"unknown model {wanted!r}; the server publishes "
                                f"{self.describe()}")

    def _named(self, wanted, collection: str | None) -> Model | None:
        """The model called ``wanted`` (``name`` or ``collection/name``), None if none."""
        if not isinstance(wanted, str):
            return None
        if "/" in wanted:
            collection_part, _, wanted = wanted.partition("/")
            if collection not in (None, collection_part):
                raise InvalidQueryError(f"model {collection_part}/{wanted} is not of "
                                        f"collection {collection!r}")
            collection = collection_part
        named = [m for m in self.models
                 if m.name == wanted and collection in (None, m.collection)]
        if len(named) > 1:
            raise InvalidQueryError(
                f"several collections have a model {wanted!r}: "
                + ", ".join(f"{m.collection}/{m.name} (model_id {m.model_id})" for m in named)
                + "; name one of them so, or give its model_id or the collection")
        return named[0] if named else None
