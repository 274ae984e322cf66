-- The follower event log: one row per subscribe / unsubscribe event the webhook handled, so the
-- statistics can count growth and unsubscribes per day (the followers table keeps only the
-- latest state). Append-only, like the audit log. Times are unix milliseconds (UTC).
CREATE TABLE follower_events (
    id     {{id}},
    openid TEXT NOT NULL,
    kind   TEXT NOT NULL CHECK (kind IN ('subscribe', 'unsubscribe')),
    at     BIGINT NOT NULL
);
CREATE INDEX follower_events_at ON follower_events (at, kind);

-- What the followers table already knows: each follower's latest subscribe and unsubscribe.
INSERT INTO follower_events (openid, kind, at)
SELECT openid, 'subscribe', subscribed_at FROM followers WHERE subscribed_at IS NOT NULL;
INSERT INTO follower_events (openid, kind, at)
SELECT openid, 'unsubscribe', unsubscribed_at FROM followers WHERE unsubscribed_at IS NOT NULL;

-- backend: sqlite
CREATE TRIGGER follower_events_append_only BEFORE UPDATE ON follower_events
BEGIN
    SELECT RAISE(ABORT, 'follower_events is append-only');
END;
-- backend: postgres
CREATE FUNCTION follower_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'follower_events is append-only';
END
$$;
CREATE TRIGGER follower_events_append_only BEFORE UPDATE ON follower_events
    FOR EACH ROW EXECUTE FUNCTION follower_events_append_only();
-- backend: all
