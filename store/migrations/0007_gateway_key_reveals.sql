-- A gateway key shown to a participant (on /me or by POST /api/me/gateway/key):
-- one row per user and consumer (a per-group consumer's key is shown once to
-- each member), naming the hash of the key that was shown. A rotation gives the
-- consumer a new key_hash, so the row no longer counts and the new key may be
-- shown once more; a consumer or user deleted takes its rows along.
CREATE TABLE gateway_key_reveals (
	user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	consumer    TEXT NOT NULL REFERENCES consumers (username) ON DELETE CASCADE,
	key_hash    TEXT NOT NULL,
	revealed_at TEXT NOT NULL,
	PRIMARY KEY (user_id, consumer)
);
CREATE INDEX gateway_key_reveals_consumer ON gateway_key_reveals (consumer);
