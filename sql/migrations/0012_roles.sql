-- Least privilege (issue 13): what each login role may do, table by table. The roles themselves
-- (and their passwords) are made by `twinctl db setup` / `twinctl stack up` as the superuser
-- before the migrations run (twinctl/dbsetup.py); this file only grants. The admin role (the
-- site's [database] user) owns every table and keeps everything.
-- A later migration that adds a table the proxy or the web page reads must grant it here too.

-- Nobody but the owner creates objects in the schema (PUBLIC may by default in PG 14 and older
-- clusters upgraded into 15; harmless on a fresh 15 cluster).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO twinning_kamailio, twinning_web;

---- Kamailio: its modules (kamailio/kamailio.cfg) and the KEMI routing (routing/store.py) ----
-- Every module checks its tables' versions at start.
GRANT SELECT ON version TO twinning_kamailio;
-- usrloc, db_mode 1: registrations written through, read back at start.
GRANT SELECT, INSERT, UPDATE, DELETE ON location, location_attrs TO twinning_kamailio;
GRANT USAGE ON SEQUENCE location_id_seq, location_attrs_id_seq TO twinning_kamailio;
-- dialog, db_mode 2: live dialogs written in the background, loaded at start.
GRANT SELECT, INSERT, UPDATE, DELETE ON dialog, dialog_vars TO twinning_kamailio;
GRANT USAGE ON SEQUENCE dialog_id_seq, dialog_vars_id_seq TO twinning_kamailio;
-- htable `call`: loaded at start; the routing writes each call's state through
-- (twinning_save_state, run with the caller's rights).
GRANT SELECT, INSERT, UPDATE, DELETE ON htable TO twinning_kamailio;
GRANT USAGE ON SEQUENCE htable_id_seq TO twinning_kamailio;
-- dispatcher (twin legs to the trunks) and permissions (trusted trunk addresses): read only;
-- twinctl changes them (the trunk table's trigger) and reloads over RPC.
GRANT SELECT ON dispatcher, address TO twinning_kamailio;
-- auth_db reads username, domain, ha1, ha1b; the routing reads the subscriber, its current
-- status and its twin. Read only: twinctl (admin) and the web page change them.
GRANT SELECT ON subscriber, status, twin TO twinning_kamailio;
-- The call log (twinning_call_answered / twinning_call_ended, the handoff rows).
GRANT SELECT, INSERT, UPDATE ON call, handoff TO twinning_kamailio;
GRANT USAGE ON SEQUENCE call_id_seq, handoff_id_seq TO twinning_kamailio;
-- LISTEN twinning_subscriber_changed needs no grant.

---- The web page (issue 12): a subscriber manages its own statuses and twin, reads its calls ----
-- Row by row the web page's service layer keeps a subscriber to its own rows; the database
-- keeps it away from everything else (no HA1 writes, no trunks, no Kamailio tables).
GRANT SELECT ON subscriber TO twinning_web;
GRANT UPDATE (current_status_id, display_name) ON subscriber TO twinning_web;
GRANT SELECT, INSERT, UPDATE, DELETE ON status, twin TO twinning_web;
GRANT USAGE ON SEQUENCE status_id_seq TO twinning_web;
GRANT SELECT ON call, handoff TO twinning_web;
