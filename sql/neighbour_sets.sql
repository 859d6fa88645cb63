-- Storage of similarity.neighbours: one row per (model, image) holding the
-- image's neighbours as two arrays in rank order.  Partitioned by model, so
-- that republishing a model swaps one partition (vo_similarity/publish/copy.py)
-- and leaves the others alone.  The RD's views similarity.neighbours and
-- similarity.outliers unnest and expose it; it is not in TAP itself.
--
-- Why arrays: docs/publish.md measures ~8 bytes per neighbour this way against
-- ~44 for a heap row per neighbour (before any index).
--
-- Applied by `vo-similarity publish` as gavoadmin before `dachs imp`; idempotent.
CREATE SCHEMA IF NOT EXISTS similarity;

CREATE TABLE IF NOT EXISTS similarity.neighbour_sets (
    model_id      smallint NOT NULL,
    image_id      integer  NOT NULL,
    outlier       real,
    neighbour_ids integer[] NOT NULL,
    dists         real[]    NOT NULL
) PARTITION BY LIST (model_id);

CREATE UNIQUE INDEX IF NOT EXISTS neighbour_sets_key
    ON similarity.neighbour_sets (model_id, image_id);

-- The random float arrays do not compress; do not try.
ALTER TABLE similarity.neighbour_sets ALTER COLUMN neighbour_ids SET STORAGE EXTERNAL;
ALTER TABLE similarity.neighbour_sets ALTER COLUMN dists SET STORAGE EXTERNAL;

GRANT USAGE ON SCHEMA similarity TO gavo, untrusted;
GRANT SELECT ON similarity.neighbour_sets TO gavo, untrusted;
