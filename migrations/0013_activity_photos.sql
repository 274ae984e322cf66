-- Photos attached to a meeting's minutes (issue 10): the bytes live in the database (base64 TEXT,
-- the same on SQLite and PostgreSQL), so every replica serves them and a backup holds them.
CREATE TABLE activity_photos (
    id           {{id}},
    activity_id  BIGINT NOT NULL REFERENCES activities (id),
    -- image/jpeg | image/png | image/webp, from the file's magic bytes (never the client's word).
    content_type TEXT NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp')),
    size_bytes   BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    content_b64  TEXT NOT NULL,
    uploaded_by  TEXT NOT NULL,
    uploaded_at  BIGINT NOT NULL
);
CREATE INDEX activity_photos_activity ON activity_photos (activity_id, id);
