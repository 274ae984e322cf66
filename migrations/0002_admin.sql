-- Admin accounts, sessions, the audit log and the members roster (personal data encrypted).
-- Times are unix milliseconds (UTC); states are TEXT. `*_enc` columns hold
-- `v1:<key_id>:<base64(nonce || ciphertext)>`; `*_idx` columns hold an HMAC blind index.
CREATE TABLE org_units (
    id         {{id}},
    name       TEXT NOT NULL UNIQUE,
    parent_id  BIGINT REFERENCES org_units (id),
    created_at BIGINT NOT NULL
);
CREATE INDEX org_units_parent ON org_units (parent_id);

CREATE TABLE admin_users (
    id                  {{id}},
    username            TEXT NOT NULL UNIQUE,
    password_hash       TEXT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('admin', 'secretary', 'editor')),
    org_unit_id         BIGINT REFERENCES org_units (id),
    status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    failed_logins       BIGINT NOT NULL DEFAULT 0,
    locked_until        BIGINT,
    last_login_at       BIGINT,
    password_changed_at BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

-- Bearer tokens (kind 'api') and console sessions (kind 'console'): only the SHA-256 is stored.
CREATE TABLE admin_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES admin_users (id),
    kind       TEXT NOT NULL CHECK (kind IN ('api', 'console')),
    csrf_token TEXT,
    ip         TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX admin_tokens_user ON admin_tokens (user_id);
CREATE INDEX admin_tokens_expires ON admin_tokens (expires_at);

-- Append-only: the only DELETE is the retention purge; UPDATE is refused by a trigger.
CREATE TABLE audit_log (
    id          {{id}},
    at          BIGINT NOT NULL,
    actor_id    BIGINT,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT,
    ip          TEXT,
    details     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor_id, at);
CREATE INDEX audit_log_action ON audit_log (action, at);
-- backend: sqlite
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
-- backend: postgres
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
-- backend: all

CREATE TABLE members (
    id                 {{id}},
    name               TEXT NOT NULL,
    phone_enc          TEXT NOT NULL,
    phone_idx          TEXT NOT NULL UNIQUE,
    id_number_enc      TEXT,
    category           TEXT NOT NULL CHECK (category IN ('employed', 'retired', 'student', 'unemployed', 'other')),
    monthly_income_enc TEXT,
    org_unit_id        BIGINT NOT NULL REFERENCES org_units (id),
    party_status       TEXT NOT NULL DEFAULT 'full' CHECK (party_status IN ('full', 'probationary')),
    joined_at          BIGINT,
    openid             TEXT UNIQUE,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX members_org_unit ON members (org_unit_id, id);
CREATE INDEX members_name ON members (name);
