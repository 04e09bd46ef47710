-- Who may sign in, and the proofs they hold. Every secret (password, session
-- id, API token, setup token, join link) is kept only as a hash: a password
-- as its argon2id encoding, the others as the hex SHA-256 of the secret.

-- An organiser known by name: the one the setup link made (with a password),
-- or, later, one allowed in through an identity provider (email, no
-- password). AUTH_LOCAL_PASSWORD is not stored: it is configuration.
CREATE TABLE organisers (
	id            INTEGER PRIMARY KEY,
	login         TEXT NOT NULL UNIQUE,
	email         TEXT NOT NULL DEFAULT '',
	password_hash TEXT NOT NULL DEFAULT '',
	created_at    TEXT NOT NULL,
	updated_at    TEXT NOT NULL
);

-- A signed-in browser. kind is organiser or participant; name is the
-- organiser's name; user_id the participant (the session goes with the
-- user); method how they proved it (password, oidc, join_link). A session
-- is live while revoked_at is NULL and expires_at is in the future.
CREATE TABLE auth_sessions (
	id_hash    TEXT PRIMARY KEY,
	kind       TEXT NOT NULL CHECK (kind IN ('organiser', 'participant')),
	name       TEXT NOT NULL DEFAULT '',
	user_id    INTEGER REFERENCES users (id) ON DELETE CASCADE,
	method     TEXT NOT NULL,
	created_at TEXT NOT NULL,
	expires_at TEXT NOT NULL,
	revoked_at TEXT,
	CHECK ((kind = 'participant') = (user_id IS NOT NULL))
);
CREATE INDEX auth_sessions_expires ON auth_sessions (expires_at);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id);

-- An organiser's API token (thon token create), used as a Bearer token on
-- /api. prefix is its first characters, shown in lists.
CREATE TABLE api_tokens (
	name       TEXT PRIMARY KEY,
	prefix     TEXT NOT NULL,
	token_hash TEXT NOT NULL UNIQUE,
	created_at TEXT NOT NULL
);

-- The one-time link that lets the first organiser set a password.
CREATE TABLE setup_tokens (
	token_hash TEXT PRIMARY KEY,
	created_at TEXT NOT NULL,
	expires_at TEXT NOT NULL,
	used_at    TEXT
);

-- A participant's one-time join link: opening it signs the user in.
CREATE TABLE join_links (
	token_hash TEXT PRIMARY KEY,
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	created_at TEXT NOT NULL,
	expires_at TEXT NOT NULL,
	used_at    TEXT,
	revoked_at TEXT
);
CREATE INDEX join_links_user ON join_links (user_id);
