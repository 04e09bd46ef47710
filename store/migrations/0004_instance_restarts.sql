-- What the engine did to a sandbox by itself, shown on the instance.
-- restarts: how often its container started again without thon starting it
-- (after a crash, by the restart policy, or when the engine came back).
-- started_at: when its container last started, as thon last saw it; a later
-- start is a restart.
ALTER TABLE instances ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN started_at TEXT;
-- How its container last ended: the exit code, whether the kernel killed it
-- for memory, the engine's error text (why it could not start again), and
-- when; exited_at is NULL while it never ended.
ALTER TABLE instances ADD COLUMN exit_code INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN exit_oom INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN exit_error TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN exited_at TEXT;
-- The organiser paused it: when the engine runs its container again (an
-- engine that stops kills its paused containers, and starts them again,
-- running, when it comes back), thon pauses it again.
ALTER TABLE instances ADD COLUMN keep_paused INTEGER NOT NULL DEFAULT 0;
-- Sandboxes paused before this migration were paused on purpose too.
UPDATE instances SET keep_paused = 1 WHERE state = 'paused' AND terminated_at IS NULL;
