-- A handoff the desk called off itself (it hung up its *55 code call while the mobile rang)
-- is neither declined nor unanswered: its own outcome.
ALTER TABLE handoff DROP CONSTRAINT handoff_outcome_check;
ALTER TABLE handoff ADD CONSTRAINT handoff_outcome_check
    CHECK (outcome IN ('pending', 'completed', 'no-answer', 'declined', 'failed', 'refused',
                       'cancelled'));
