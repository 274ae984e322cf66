-- Identity (one member, two openids) and the organisation (org-unit kinds, member status, the
-- transfer of Party relations). Times are unix milliseconds (UTC); states are TEXT.

-- `members.openid` stays the MINI-PROGRAM openid. `oa_openid` is the member's openid under the
-- official account; `unionid` links the two when both apps are on one open-platform account.
ALTER TABLE members ADD COLUMN oa_openid TEXT;
ALTER TABLE members ADD COLUMN unionid TEXT;
-- active | transferred_out (Party relation moved to another organisation) | left (removed).
-- Only active members count, bind, or receive pushes; the others keep their history.
ALTER TABLE members ADD COLUMN status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'transferred_out', 'left'));
-- 转正 (probationary → full member); `joined_at` is the date of admission (接收为预备党员).
ALTER TABLE members ADD COLUMN full_at BIGINT;
ALTER TABLE members ADD COLUMN left_at BIGINT;
CREATE UNIQUE INDEX members_oa_openid ON members (oa_openid);
CREATE UNIQUE INDEX members_unionid ON members (unionid);
CREATE INDEX members_status ON members (status, org_unit_id);

CREATE INDEX followers_unionid ON followers (unionid);

-- Mini-program users as code2session saw them: the UnionID arrives at login, the binding later.
CREATE TABLE mp_users (
    openid         TEXT PRIMARY KEY,
    unionid        TEXT,
    first_login_at BIGINT NOT NULL,
    last_login_at  BIGINT NOT NULL
);
CREATE INDEX mp_users_unionid ON mp_users (unionid);

-- The tree: party committee (党委) → general branch (党总支) → branch (党支部) → Party group (党小组).
ALTER TABLE org_units ADD COLUMN kind TEXT NOT NULL DEFAULT 'branch' CHECK (kind IN ('committee', 'general_branch', 'branch', 'group'));
ALTER TABLE org_units ADD COLUMN updated_at BIGINT;

-- 组织关系转接. within: between two of our units (done at once); out: to another organisation
-- with an introduction letter (issued → received | returned); in: registered on arrival.
CREATE TABLE member_transfers (
    id               {{id}},
    member_id        BIGINT NOT NULL REFERENCES members (id),
    direction        TEXT NOT NULL CHECK (direction IN ('within', 'out', 'in')),
    status           TEXT NOT NULL CHECK (status IN ('completed', 'issued', 'received', 'returned')),
    from_org_unit_id BIGINT REFERENCES org_units (id),
    to_org_unit_id   BIGINT REFERENCES org_units (id),
    -- out: the destination organisation; in: the organisation the member comes from.
    external_org     TEXT,
    -- out: our letter's number; in: the number on the letter the member brought.
    letter_no        TEXT,
    -- Party dues paid up to this month (YYYY-MM), as the letter states.
    dues_paid_until  TEXT,
    validity_days    BIGINT,
    expires_at       BIGINT,
    reason           TEXT,
    -- returned: why the other side sent the letter back.
    outcome_reason   TEXT,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    closed_by        TEXT,
    closed_at        BIGINT,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX member_transfers_member ON member_transfers (member_id, id);
CREATE INDEX member_transfers_status ON member_transfers (status, id);
CREATE UNIQUE INDEX member_transfers_letter_no ON member_transfers (letter_no) WHERE direction = 'out';
-- At most one outgoing letter open per member, whatever two secretaries do at once.
CREATE UNIQUE INDEX member_transfers_one_open ON member_transfers (member_id) WHERE status = 'issued';

-- Which app's API (and token) a push goes through: 'oa' (template, mass, custom, the account's
-- subscribe notices) or 'mp' (the mini-program's subscribe messages). NULL on older rows:
-- subscribe → mp, everything else → oa.
ALTER TABLE pushes ADD COLUMN app TEXT CHECK (app IS NULL OR app IN ('oa', 'mp'));

-- Consent per app: the account's subscribe notices (订阅通知, popup events on the webhook) and the
-- mini-program's subscribe messages (订阅消息, wx.requestSubscribeMessage) are separate grants.
-- Existing rows: a member's mini-program openid or an openid we never saw follow → mp; a
-- follower → oa.
CREATE TABLE subscribe_grants_v2 (
    app         TEXT NOT NULL CHECK (app IN ('oa', 'mp')),
    openid      TEXT NOT NULL,
    template_id TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('accept', 'reject', 'ban')),
    credits     BIGINT NOT NULL DEFAULT 0,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (app, openid, template_id)
);
INSERT INTO subscribe_grants_v2 (app, openid, template_id, status, credits, updated_at)
SELECT CASE WHEN EXISTS (SELECT 1 FROM followers f WHERE f.openid = g.openid)
             AND NOT EXISTS (SELECT 1 FROM members m WHERE m.openid = g.openid) THEN 'oa' ELSE 'mp' END,
       g.openid, g.template_id, g.status, g.credits, g.updated_at
FROM subscribe_grants g;
DROP TABLE subscribe_grants;
ALTER TABLE subscribe_grants_v2 RENAME TO subscribe_grants;
CREATE INDEX subscribe_grants_template ON subscribe_grants (app, template_id, status);

-- Delivery rows name the member they were made for, and a member with no openid for the channel
-- gets a `skipped` row without one (openid NULL; UNIQUE(push_id, openid) lets NULLs repeat).
-- backend: sqlite
CREATE TABLE push_deliveries_v2 (
    id              {{id}},
    push_id         BIGINT NOT NULL REFERENCES pushes (id),
    openid          TEXT,
    member_id       BIGINT,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'in_flight', 'sent', 'failed', 'unknown', 'skipped')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    worker_id       TEXT,
    lease_until     BIGINT,
    msgid           BIGINT,
    error_code      TEXT,
    error           TEXT,
    report          TEXT,
    sent_at         BIGINT,
    updated_at      BIGINT NOT NULL,
    UNIQUE (push_id, openid)
);
INSERT INTO push_deliveries_v2 (id, push_id, openid, status, attempts, next_attempt_at, worker_id, lease_until,
    msgid, error_code, error, report, sent_at, updated_at)
SELECT id, push_id, openid, status, attempts, next_attempt_at, worker_id, lease_until,
    msgid, error_code, error, report, sent_at, updated_at
FROM push_deliveries;
DROP TABLE push_deliveries;
ALTER TABLE push_deliveries_v2 RENAME TO push_deliveries;
CREATE INDEX push_deliveries_claim ON push_deliveries (push_id, status, next_attempt_at);
CREATE INDEX push_deliveries_lease ON push_deliveries (status, lease_until);
CREATE INDEX push_deliveries_msgid ON push_deliveries (msgid);
-- backend: postgres
ALTER TABLE push_deliveries ALTER COLUMN openid DROP NOT NULL;
ALTER TABLE push_deliveries ADD COLUMN member_id BIGINT;
-- backend: all
CREATE INDEX push_deliveries_member ON push_deliveries (member_id);
