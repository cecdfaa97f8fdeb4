-- The call log records which devices were offered the call (desk, mobile, trunk).
DROP FUNCTION twinning_call_answered(text, integer, text, text, text, text, text[], text[]);

CREATE FUNCTION twinning_call_answered(p_call_id text, p_subscriber integer, p_direction text,
                                       p_caller text, p_callee text, p_rang text[],
                                       p_answered_by text, keys text[], vals text[])
RETURNS void LANGUAGE sql AS $$
    INSERT INTO call (call_id, subscriber_id, direction, caller, callee, rang, answered_by,
                      answered_at)
    VALUES (p_call_id, p_subscriber, p_direction, p_caller, p_callee, p_rang, p_answered_by,
            now())
    ON CONFLICT (call_id) DO NOTHING;
    SELECT twinning_save_state(keys, vals, '{}');
$$;
