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

---- The web page (portal/): what its service layer (twinning.service) and portal/auth.py do ----
-- A subscriber reads its own rows and changes only what the page offers: its current status,
-- where a status rings, its twin. Row by row the service layer keeps a subscriber to its own;
-- the database keeps the page away from everything else: no HA1 or PIN writes, no new or
-- removed statuses or subscribers, no trunks, no Kamailio tables.
-- The log-in checks subscriber.ha1; "My Numbers" and "Manage Status" read the rest.
GRANT SELECT ON subscriber TO twinning_web;
-- Make a status current (statuses.make_current); also what SELECT ... FOR UPDATE needs.
GRANT UPDATE (current_status_id) ON subscriber TO twinning_web;
-- Edit where a status sends calls (statuses.route_status).
GRANT SELECT, UPDATE (send_to, ring_desk, ring_mobile) ON status TO twinning_web;
-- Set or remove the twin (twins.set_twin upserts it, twins.clear_twin deletes it).
GRANT SELECT, INSERT, DELETE, UPDATE (number, label, updated_at) ON twin TO twinning_web;
-- Recent Calls (calls.recent_calls).
GRANT SELECT ON call, handoff TO twinning_web;
-- Its sessions, log-in failures and lock-outs (0011_portal.sql), all its own.
GRANT SELECT, INSERT, DELETE, UPDATE (seen_at, expires_at) ON portal_session TO twinning_web;
GRANT SELECT, INSERT, DELETE ON portal_login_failure TO twinning_web;
GRANT USAGE ON SEQUENCE portal_login_failure_id_seq TO twinning_web;
GRANT SELECT, INSERT, DELETE, UPDATE (until) ON portal_lockout TO twinning_web;
