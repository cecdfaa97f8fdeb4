-- A call's log row and its durable handoff state change together (at answer, at the end):
-- one round trip from the routing for both.
CREATE FUNCTION twinning_call_answered(p_call_id text, p_subscriber integer, p_direction text,
                                       p_caller text, p_callee text, p_answered_by text,
                                       keys text[], vals text[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO call (call_id, subscriber_id, direction, caller, callee, answered_by, answered_at)
    VALUES (p_call_id, p_subscriber, p_direction, p_caller, p_callee, p_answered_by, now())
    ON CONFLICT (call_id) DO NOTHING;
    SELECT twinning_save_state(keys, vals, '{}');
$$;

CREATE FUNCTION twinning_call_ended(p_call_id text, p_outcome text, gone text[]) RETURNS void
LANGUAGE sql AS $$
    UPDATE call SET ended_at = now(), outcome = p_outcome
     WHERE call_id = p_call_id AND ended_at IS NULL;
    SELECT twinning_save_state('{}', '{}', gone);
$$;
