-- A group that shares lets its members open each other's sandboxes (a team
-- working together); by default each participant reaches only their own.
ALTER TABLE groups ADD COLUMN shared INTEGER NOT NULL DEFAULT 0;
