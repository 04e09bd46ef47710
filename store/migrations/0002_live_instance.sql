-- One live (not terminated) instance per user: a second launch of the same
-- user must find the first, never start a twin.
CREATE UNIQUE INDEX instances_live_user ON instances (group_name, user_name) WHERE terminated_at IS NULL;
