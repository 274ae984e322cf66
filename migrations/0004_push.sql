-- Pushes: one job per editor request, one durable delivery row per recipient.
-- Times are unix milliseconds (UTC); states are TEXT. See src/push/mod.rs for the state machine.
CREATE TABLE pushes (
    id               {{id}},
    channel          TEXT NOT NULL CHECK (channel IN ('template', 'mass', 'custom', 'subscribe')),
    audience_kind    TEXT NOT NULL CHECK (audience_kind IN ('all', 'tag', 'org_unit', 'members')),
    audience_ids     TEXT NOT NULL DEFAULT '[]',
    article_ids      TEXT NOT NULL,
    template_id      TEXT,
    status           TEXT NOT NULL CHECK (status IN ('scheduled', 'running', 'paused', 'completed', 'cancelled', 'failed')),
    status_reason    TEXT,
    scheduled_at     BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    total            BIGINT NOT NULL DEFAULT 0,
    -- Mass send: one API call per job. mass_state: NULL (not yet), in_flight, sent, unknown, failed.
    mass_state       TEXT,
    mass_reserved_at BIGINT,
    mass_lease_until BIGINT,
    mass_msg_id      BIGINT,
    mass_msg_data_id BIGINT,
    mass_report      TEXT,
    created_by       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX pushes_status ON pushes (status, scheduled_at);
CREATE INDEX pushes_mass_reserved ON pushes (mass_reserved_at);
CREATE INDEX pushes_mass_msg_id ON pushes (mass_msg_id);

CREATE TABLE push_deliveries (
    id              {{id}},
    push_id         BIGINT NOT NULL REFERENCES pushes (id),
    openid          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'in_flight', 'sent', 'failed', 'unknown', 'skipped')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    worker_id       TEXT,
    lease_until     BIGINT,
    msgid           BIGINT,
    -- Why a row is failed/skipped/unknown or was last retried: a WeChat errcode ("43004") or a word.
    error_code      TEXT,
    error           TEXT,
    -- TEMPLATESENDJOBFINISH status (success, failed:user block, failed: system failed).
    report          TEXT,
    sent_at         BIGINT,
    updated_at      BIGINT NOT NULL,
    UNIQUE (push_id, openid)
);
CREATE INDEX push_deliveries_claim ON push_deliveries (push_id, status, next_attempt_at);
CREATE INDEX push_deliveries_lease ON push_deliveries (status, lease_until);
CREATE INDEX push_deliveries_msgid ON push_deliveries (msgid);

-- Mini-program subscribe-message consent (订阅消息): one-time grants add credits, a send uses one;
-- a reject or ban (subscribe_msg_change_event, 43101 on send) stops further sends.
CREATE TABLE subscribe_grants (
    openid      TEXT NOT NULL,
    template_id TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('accept', 'reject', 'ban')),
    credits     BIGINT NOT NULL DEFAULT 0,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (openid, template_id)
);
CREATE INDEX subscribe_grants_template ON subscribe_grants (template_id, status);
