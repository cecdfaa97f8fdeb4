-- The routing writes each live call's handoff state through to Kamailio's htable table as it
-- changes (Kamailio loads that table into the shared-memory htable `call` when it starts), so a
-- restarted proxy still knows every stitched call. One row per key.
DELETE FROM htable a USING htable b WHERE a.key_name = b.key_name AND a.id < b.id;
CREATE UNIQUE INDEX htable_key_name_idx ON htable (key_name);

CREATE FUNCTION twinning_save_state(keys text[], vals text[], gone text[]) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM htable WHERE key_name = ANY(gone);
    -- key_type 0: a plain key; value_type 0: a string value.
    INSERT INTO htable (key_name, key_type, value_type, key_value, expires)
    SELECT k, 0, 0, v, 0 FROM unnest(keys, vals) AS t(k, v)
    ON CONFLICT (key_name) DO UPDATE SET key_value = excluded.key_value;
$$;
