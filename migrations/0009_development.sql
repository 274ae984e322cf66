-- 发展党员: one development record per person, its dated steps, documents, thought reports and
-- the reminders sent about its deadlines. Times are unix milliseconds; step dates are calendar
-- dates in Asia/Shanghai stored as TEXT `YYYY-MM-DD` (a step happens on a day, not at an
-- instant; the text sorts like the date). `*_enc` columns are encrypted personal data.

CREATE TABLE development_records (
    id             {{id}},
    -- The roster entry, when the person is on it (one record per member).
    member_id      BIGINT UNIQUE REFERENCES members (id),
    name           TEXT NOT NULL,
    id_number_enc  TEXT,
    -- Blind index of the ID number: one record per person off the roster too.
    id_number_idx  TEXT UNIQUE,
    birth_date_enc TEXT,
    org_unit_id    BIGINT NOT NULL REFERENCES org_units (id),
    stage          TEXT NOT NULL CHECK (stage IN ('applicant', 'activist', 'target', 'probationary', 'full', 'cancelled')),
    -- When the current stage was entered (YYYY-MM-DD).
    stage_since    TEXT,
    -- 党龄 counts from here: the end of probation (YYYY-MM-DD), set on confirmation.
    full_member_since TEXT,
    created_by     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX development_records_unit_stage ON development_records (org_unit_id, stage);

-- Entries are never edited: an approval changes `status` and fills the decision columns once,
-- a correction is a new entry (`corrects`) that marks the old one `superseded`.
--   recorded   effective (steps without approval)
--   submitted  waiting in the upper committee's queue
--   approved   effective from `decided_on`
--   returned   sent back with a reason (not effective; a new entry may be submitted)
--   superseded replaced by a correction
CREATE TABLE development_steps (
    id               {{id}},
    record_id        BIGINT NOT NULL REFERENCES development_records (id),
    step             TEXT NOT NULL,
    step_on          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('recorded', 'submitted', 'approved', 'returned', 'superseded')),
    opinion          TEXT,
    opinion_of       TEXT,
    -- JSON: contacts, class_hours, end_date, extension_months, delay_reason.
    details          TEXT NOT NULL DEFAULT '{}',
    -- JSON array of development_documents ids.
    documents        TEXT NOT NULL DEFAULT '[]',
    corrects         BIGINT REFERENCES development_steps (id),
    correction_reason TEXT,
    recorded_by      TEXT NOT NULL,
    recorded_by_id   BIGINT,
    recorded_at      BIGINT NOT NULL,
    decided_on       TEXT,
    decided_by       TEXT,
    decided_at       BIGINT,
    decision_opinion TEXT,
    -- Why the decision came after a `within` limit (特殊情况), when it did.
    decision_delay_reason TEXT,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX development_steps_record ON development_steps (record_id, id);
CREATE INDEX development_steps_status ON development_steps (status, record_id);
-- At most one entry of a step waits for approval at a time.
CREATE UNIQUE INDEX development_steps_one_submitted ON development_steps (record_id, step) WHERE status = 'submitted';
-- backend: sqlite
CREATE TRIGGER development_steps_immutable BEFORE UPDATE OF record_id, step, step_on, opinion, opinion_of, details, documents, corrects, recorded_by, recorded_at ON development_steps
BEGIN
    SELECT RAISE(ABORT, 'development steps are not edited; record a correction');
END;
-- backend: postgres
CREATE FUNCTION development_steps_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'development steps are not edited; record a correction';
END
$$;
CREATE TRIGGER development_steps_immutable BEFORE UPDATE OF record_id, step, step_on, opinion, opinion_of, details, documents, corrects, recorded_by, recorded_at ON development_steps
    FOR EACH ROW EXECUTE FUNCTION development_steps_immutable();
-- backend: all

-- Uploaded documents (入党申请书, 政审材料, 入党志愿书, ...): the bytes, base64, encrypted.
CREATE TABLE development_documents (
    id           {{id}},
    record_id    BIGINT NOT NULL REFERENCES development_records (id),
    kind         TEXT NOT NULL,
    file_name    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    content_enc  TEXT NOT NULL,
    uploaded_by  TEXT NOT NULL,
    uploaded_at  BIGINT NOT NULL
);
CREATE INDEX development_documents_record ON development_documents (record_id, id);

-- Thought reports (思想汇报): from the mini-program, or a paper report recorded by the branch.
CREATE TABLE development_reports (
    id          {{id}},
    record_id   BIGINT NOT NULL REFERENCES development_records (id),
    report_on   TEXT NOT NULL,
    content_enc TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('mp', 'admin')),
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX development_reports_record ON development_reports (record_id, report_on);

-- One reminder per record, kind (`<rule>:due_soon|overdue`), due date and audience, whatever
-- runs the pass how often: queued as `pending` (or `sent` for the console inbox) in the pass's
-- transaction, claimed (`sending`, with a lease) before WeChat is called, then `sent`/`failed`;
-- a lease that runs out means the outcome is unknown, and it is never sent again.
CREATE TABLE development_reminders (
    id          {{id}},
    record_id   BIGINT NOT NULL REFERENCES development_records (id),
    kind        TEXT NOT NULL,
    due_on      TEXT NOT NULL,
    audience    TEXT NOT NULL CHECK (audience IN ('applicant', 'secretary')),
    channel     TEXT NOT NULL CHECK (channel IN ('custom', 'console')),
    openid      TEXT,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped', 'unknown')),
    message     TEXT NOT NULL,
    error       TEXT,
    lease_until BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (record_id, kind, due_on, audience)
);
CREATE INDEX development_reminders_status ON development_reminders (status, id);
