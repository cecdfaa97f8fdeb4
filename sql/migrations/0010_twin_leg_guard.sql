-- The twin leg never loses a call to the mobile's voicemail (see docs/voicemail-avoidance.md).
-- Per subscriber: a twin leg answered sooner than answer_too_soon_ms after its INVITE left is
-- taken for the carrier's voicemail (0 = off); the twin leg rings at most mobile_ring_max_s,
-- before a typical carrier voicemail picks up (20-30 s); mobile_confirm asks the person who
-- answers to press 1 first. Per status: how long the desk rings alone before the mobile.
ALTER TABLE subscriber
    ADD COLUMN answer_too_soon_ms integer NOT NULL DEFAULT 1500
        CHECK (answer_too_soon_ms BETWEEN 0 AND 10000),
    ADD COLUMN mobile_ring_max_s integer NOT NULL DEFAULT 19
        CHECK (mobile_ring_max_s BETWEEN 5 AND 300),
    ADD COLUMN mobile_confirm boolean NOT NULL DEFAULT false;

ALTER TABLE status
    ADD COLUMN mobile_delay_s integer NOT NULL DEFAULT 0
        CHECK (mobile_delay_s BETWEEN 0 AND 60);

-- Each twin leg (of a twin ring or of a handoff) the proxy kept away from the caller: what
-- the operator reads to see what the rules avoided, and what the metrics count.
CREATE TABLE twin_leg_avoided (
    id bigserial PRIMARY KEY,
    call_id text NOT NULL,
    subscriber_id integer REFERENCES subscriber (id) ON DELETE CASCADE,
    leg text NOT NULL CHECK (leg IN ('twin', 'handoff')),
    reason text NOT NULL CHECK (reason IN ('answered-too-soon', 'rang-too-long',
                                           'not-confirmed')),
    after_ms integer NOT NULL CHECK (after_ms >= 0),
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX twin_leg_avoided_at_idx ON twin_leg_avoided (at);
CREATE INDEX twin_leg_avoided_sub_idx ON twin_leg_avoided (subscriber_id);
