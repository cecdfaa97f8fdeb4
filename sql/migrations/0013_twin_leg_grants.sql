-- The proxy writes the twin legs it kept from the caller (routing/store.py, "avoided";
-- docs/voicemail-avoidance.md) as the kamailio role of 0012: it may add rows, not change or
-- read them back (twinctl and the operator read them as admin).
GRANT INSERT ON twin_leg_avoided TO twinning_kamailio;
GRANT USAGE ON SEQUENCE twin_leg_avoided_id_seq TO twinning_kamailio;
