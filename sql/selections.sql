-- The one way the web page writes similarity.selections (docs/web.md): a
-- function that runs with its owner's rights (gavoadmin, who owns the table),
-- executable by DaCHS's trustedquery role `gavo` only.  The role itself gets no
-- write right on the table, so no statement of the page's service can change
-- or delete what users recorded, and DaCHS, which resets table privileges
-- whenever it imports the RD's metadata, cannot take this right away.
-- plpgsql: the body is checked when called, so this may run before DaCHS has
-- created the table.
--
-- Applied by `vo-similarity publish` as gavoadmin before `dachs imp`; idempotent.
CREATE OR REPLACE FUNCTION similarity.add_selection(
    p_model smallint, p_query integer, p_chosen integer, p_similar boolean, p_session text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO similarity.selections
        (model_id, image_id, chosen_id, is_similar, created, session_id)
    VALUES (p_model, p_query, p_chosen, p_similar, now() AT TIME ZONE 'UTC', p_session);
END
$$;

REVOKE ALL ON FUNCTION similarity.add_selection(smallint, integer, integer, boolean, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION similarity.add_selection(smallint, integer, integer, boolean, text)
    TO gavo;
