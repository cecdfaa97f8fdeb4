-- Kamailio's htable table keeps the `call` htable across restarts (handoff state: a JSON
-- document per call, and Call-IDs as keys). Its shipped columns (64/128 characters) are too
-- narrow for either.
ALTER TABLE htable ALTER COLUMN key_name TYPE varchar(256);
ALTER TABLE htable ALTER COLUMN key_value TYPE text;
