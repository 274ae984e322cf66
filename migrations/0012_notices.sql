-- Notices to members over WeChat (activity cancellations, waitlist promotions and reminders; dues
-- reminders) through the durable push machinery, and consent grants recorded once per event.
-- Times are unix milliseconds (UTC); states are TEXT.

-- A push carries either articles (`article_ids`) or a notice: JSON {"kind","title","text","url",
-- "page","data"} rendered by push::templates::render_notice. NULL on article pushes.
ALTER TABLE pushes ADD COLUMN notice TEXT;

-- Activity notices are handed to notice pushes: `queued` with the push and the delivery row
-- they went into, in the transaction that made that row (the row then carries the outcome).
-- backend: sqlite
CREATE TABLE activity_notices_v2 (
    id          {{id}},
    activity_id BIGINT NOT NULL REFERENCES activities (id),
    member_id   BIGINT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('cancelled', 'promoted', 'reminder')),
    signup_id   BIGINT NOT NULL DEFAULT 0,
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'queued', 'sent', 'skipped', 'failed')),
    error       TEXT,
    created_at  BIGINT NOT NULL,
    sent_at     BIGINT,
    push_id     BIGINT REFERENCES pushes (id),
    delivery_id BIGINT,
    UNIQUE (activity_id, member_id, kind, signup_id)
);
INSERT INTO activity_notices_v2 (id, activity_id, member_id, kind, signup_id, status, error, created_at, sent_at)
SELECT id, activity_id, member_id, kind, signup_id, status, error, created_at, sent_at FROM activity_notices;
DROP TABLE activity_notices;
ALTER TABLE activity_notices_v2 RENAME TO activity_notices;
CREATE INDEX activity_notices_status ON activity_notices (status, id);
-- backend: postgres
ALTER TABLE activity_notices DROP CONSTRAINT activity_notices_status_check;
ALTER TABLE activity_notices ADD CONSTRAINT activity_notices_status_check
    CHECK (status IN ('pending', 'queued', 'sent', 'skipped', 'failed'));
ALTER TABLE activity_notices ADD COLUMN push_id BIGINT REFERENCES pushes (id);
ALTER TABLE activity_notices ADD COLUMN delivery_id BIGINT;
-- backend: all

-- Dues reminders: the last reminder of each bill (the guard of "at most once per interval", set in
-- the transaction that queues it) and every reminder queued, with its push and delivery row.
ALTER TABLE dues_bills ADD COLUMN reminded_at BIGINT;
CREATE TABLE dues_reminders (
    id          {{id}},
    bill_id     BIGINT NOT NULL REFERENCES dues_bills (id),
    member_id   BIGINT NOT NULL,
    month       TEXT NOT NULL,
    push_id     BIGINT NOT NULL REFERENCES pushes (id),
    delivery_id BIGINT,
    created_by  TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX dues_reminders_bill ON dues_reminders (bill_id, id);
CREATE INDEX dues_bills_reminder ON dues_bills (month, status, reminded_at);

-- Consent answers already credited, by the identity of the event that carried them (the account's
-- FromUserName:CreateTime:Event, a mini-program request id): a retried event adds nothing.
CREATE TABLE subscribe_grant_events (
    app         TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    template_id TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (app, event_id, template_id)
);
