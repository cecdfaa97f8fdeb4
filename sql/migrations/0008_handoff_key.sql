-- Handoff rows are written by the proxy's background writer, so the routing names each one
-- itself instead of waiting for the database's id.
ALTER TABLE handoff ADD COLUMN handoff_key text UNIQUE;
