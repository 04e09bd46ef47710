-- The node ID of this database's thon: every sandbox container it creates
-- carries it (label thon.node), so that thons sharing one Docker engine
-- never adopt each other's sandboxes. Made once, with the database.
INSERT INTO settings (key, value, updated_at)
VALUES ('sandboxes.node_id', lower(hex(randomblob(8))), strftime('%Y-%m-%dT%H:%M:%S', 'now') || '.000000000Z')
ON CONFLICT (key) DO NOTHING;
