"""Republishing only the rows ``update`` changed (docs/publish.md, "Growth").

After ``vo-similarity update`` a model's folder holds
``neighbour_changes.json``: the rows whose lists changed (and the new ones)
from one state of its files to the next
(:class:`~vo_similarity.neighbours.store.NeighbourChanges`).  The server keeps,
per model, the state it last published (``data/neighbour-stamps/m<id>.json``).
When the record starts at the published state and ends at the files'
current one, publishing deletes and inserts those rows in the model's
partition in one transaction (:func:`.copy.update_partition`) instead of
loading all of them; in every other case it loads them all, as always.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..neighbours.store import NeighbourChanges, read_neighbour_changes
from ..workdir import ModelDir, atomic_write
from .dachs import DachsSite

__all__ = ["changes_to_send", "forget_published_state", "record_published_state"]

log = logging.getLogger(__name__)


def _stamp(site: DachsSite, model_id: int) -> Path:
    return site.resdir / "data" / "neighbour-stamps" / f"m{int(model_id)}.json"


def changes_to_send(site: DachsSite, model: ModelDir, model_id: int, offset: int,
                    state: str) -> NeighbourChanges | None:
    """The rows to send of ``model`` (published as ``model_id`` at ``offset``), or
    None where all must go (no record, or one that does not join the published
    state to ``state``, the files' :func:`~vo_similarity.neighbours.store.neighbour_state`)."""
    changes = read_neighbour_changes(model)
    if changes is None or changes.result != state:
        return None
    try:
        published = json.loads(_stamp(site, model_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if published.get("state") != changes.base or published.get("offset") != int(offset):
        return None
    log.info("model %s: %d rows changed, %d removed since its publication", model.name,
             len(changes.changed), len(changes.removed))
    return changes


def record_published_state(site: DachsSite, model_id: int, offset: int, state: str) -> None:
    """Remember that model ``model_id``'s rows on the server are those of ``state``."""
    path = _stamp(site, model_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps({"state": state, "offset": int(offset)}), encoding="utf-8")


def forget_published_state(site: DachsSite, model_id: int) -> None:
    """The model's rows are gone or about to change: no state is known."""
    _stamp(site, model_id).unlink(missing_ok=True)
