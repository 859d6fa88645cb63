-- Which vector file (the model's published embeddings, for the search service
-- of similarity/q; docs/search-service.md) belongs to which model.  Changed in
-- the transaction that swaps the model's neighbours in
-- (vo_similarity/publish/copy.py: swap_in), so the service always reads the
-- embeddings of the neighbours readers see.  Not in TAP.
--
-- Applied by `vo-similarity publish` as gavoadmin before `dachs imp`; idempotent.
CREATE TABLE IF NOT EXISTS similarity.vector_files (
    model_id  smallint PRIMARY KEY,
    file      text     NOT NULL,   -- name below <resdir>/data/vectors/
    n_vectors integer  NOT NULL,
    dim       smallint NOT NULL
);

GRANT SELECT ON similarity.vector_files TO gavo, untrusted;
