-- thon schema, version 1.
-- Timestamps are TEXT in UTC, fixed width (2006-01-02T15:04:05.000000000Z),
-- so they sort as text. Names are DNS labels (validated in Go).

CREATE TABLE events (
	id         INTEGER PRIMARY KEY,
	event_id   TEXT NOT NULL UNIQUE,
	title      TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL
);

CREATE TABLE groups (
	id         INTEGER PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	title      TEXT NOT NULL DEFAULT '',
	event_id   TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL
);

CREATE TABLE users (
	id         INTEGER PRIMARY KEY,
	group_id   INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	email      TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	UNIQUE (group_id, name)
);
CREATE INDEX users_name ON users (name);

-- A sandbox. group_name and user_name are the names at creation time (they
-- name the container and its volume); user_id follows the user through
-- transfers and becomes NULL when the user is deleted. A terminated instance
-- gives its port back by setting port to NULL.
CREATE TABLE instances (
	id            INTEGER PRIMARY KEY,
	group_name    TEXT NOT NULL,
	user_name     TEXT NOT NULL,
	user_id       INTEGER REFERENCES users (id) ON DELETE SET NULL,
	container_id  TEXT NOT NULL DEFAULT '',
	name          TEXT NOT NULL,
	state         TEXT NOT NULL,
	port          INTEGER,
	image         TEXT NOT NULL DEFAULT '',
	password      TEXT NOT NULL DEFAULT '',
	workspace     TEXT NOT NULL DEFAULT '',
	url           TEXT NOT NULL DEFAULT '',
	expires_at    TEXT,
	created_at    TEXT NOT NULL,
	updated_at    TEXT NOT NULL,
	terminated_at TEXT
);
CREATE UNIQUE INDEX instances_port ON instances (port) WHERE port IS NOT NULL;
CREATE INDEX instances_user ON instances (group_name, user_name);
CREATE INDEX instances_state ON instances (state);
CREATE INDEX instances_user_id ON instances (user_id);

CREATE TABLE settings (
	key        TEXT PRIMARY KEY,
	value      TEXT NOT NULL,
	updated_at TEXT NOT NULL
);

-- An LLM gateway consumer: "<group>-<user>" (per-user) or "group-<group>"
-- (per-group). Only the SHA-256 hash of the key is kept.
CREATE TABLE consumers (
	username          TEXT PRIMARY KEY,
	mode              TEXT NOT NULL,
	group_name        TEXT NOT NULL,
	user_name         TEXT NOT NULL DEFAULT '',
	key_hash          TEXT NOT NULL UNIQUE,
	key_prefix        TEXT NOT NULL DEFAULT '',
	token_limit       INTEGER NOT NULL DEFAULT 0,
	token_window      INTEGER NOT NULL DEFAULT 0,
	concurrency_limit INTEGER NOT NULL DEFAULT 0,
	created_at        TEXT NOT NULL,
	revoked_at        TEXT
);
CREATE INDEX consumers_group ON consumers (group_name, user_name);

CREATE TABLE usage (
	id                INTEGER PRIMARY KEY,
	consumer          TEXT NOT NULL,
	at                TEXT NOT NULL,
	model             TEXT NOT NULL DEFAULT '',
	prompt_tokens     INTEGER NOT NULL DEFAULT 0,
	completion_tokens INTEGER NOT NULL DEFAULT 0,
	total_tokens      INTEGER NOT NULL DEFAULT 0,
	status            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX usage_consumer_at ON usage (consumer, at);
CREATE INDEX usage_at ON usage (at);

CREATE TABLE audit (
	id     INTEGER PRIMARY KEY,
	at     TEXT NOT NULL,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	target TEXT NOT NULL DEFAULT '',
	detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit (at);
