-- Hardening after the security review (issue 13).
--
-- The audit log is append-only: 0002 refuses UPDATE; this refuses DELETE (and TRUNCATE) except
-- from the retention purge (`platform::audit::purge_older_than`), which marks its own transaction:
-- on PostgreSQL with the transaction-local setting `dangjian.audit_purge = on`, on SQLite with a
-- row in `audit_purge_marker` that it inserts and removes inside the same transaction (no other
-- connection ever sees it: the purge holds SQLite's write lock from BEGIN IMMEDIATE to COMMIT).
-- backend: sqlite
CREATE TABLE audit_purge_marker (active INTEGER NOT NULL);
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN NOT EXISTS (SELECT 1 FROM audit_purge_marker)
BEGIN
    SELECT RAISE(ABORT, 'audit_log: entries are deleted only by the retention purge');
END;
-- backend: postgres
CREATE FUNCTION audit_log_no_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('dangjian.audit_purge', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit_log: entries are deleted only by the retention purge';
END
$$;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_no_delete();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_no_delete();
-- backend: all

-- Per-member throttles and duplicate detection on submissions and board posts look up a member's
-- recent items by time.
CREATE INDEX submissions_openid_created ON submissions (openid, created_at);
CREATE INDEX board_posts_openid_created ON board_posts (openid, created_at);
