-- Activities (活动) and the 三会一课 meetings: sign-ups with a waitlist, check-in, attendance.
-- Times are unix milliseconds (UTC); states are TEXT. See src/activities/mod.rs for the rules the
-- constraints below hold under any concurrency.
CREATE TABLE activities (
    id               {{id}},
    title            TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('activity', 'branch_general_meeting', 'branch_committee_meeting', 'party_group_meeting', 'party_lecture', 'theme_day')),
    description      TEXT NOT NULL DEFAULT '',
    location         TEXT NOT NULL DEFAULT '',
    capacity         BIGINT NOT NULL,
    -- Confirmed sign-ups; only changed together with activity_signups, in one transaction.
    confirmed_count  BIGINT NOT NULL DEFAULT 0,
    -- Waitlisted sign-ups, kept the same way: a sign-up is confirmed only while this is 0.
    waitlisted_count BIGINT NOT NULL DEFAULT 0,
    -- The last sign-up sequence number given out (monotonic per activity: the waitlist order).
    signup_seq       BIGINT NOT NULL DEFAULT 0,
    starts_at        BIGINT NOT NULL,
    ends_at          BIGINT,
    signup_opens_at  BIGINT NOT NULL,
    signup_closes_at BIGINT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'cancelled')),
    cancelled_at     BIGINT,
    cancel_reason    TEXT,
    -- Meetings: who chaired, who took the minutes, the minutes and photo URLs (JSON array).
    host             TEXT,
    recorder         TEXT,
    minutes          TEXT,
    photos           TEXT NOT NULL DEFAULT '[]',
    minutes_at       BIGINT,
    -- Reminders: minutes before the start; set when the reminders were queued (once).
    remind_minutes   BIGINT NOT NULL DEFAULT 60,
    reminded_at      BIGINT,
    created_by       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    CHECK (capacity >= 1),
    CHECK (confirmed_count >= 0 AND confirmed_count <= capacity),
    CHECK (waitlisted_count >= 0),
    CHECK (signup_opens_at < signup_closes_at AND signup_closes_at <= starts_at),
    CHECK (ends_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX activities_starts ON activities (starts_at, id);
CREATE INDEX activities_remind ON activities (status, reminded_at, starts_at);

-- Who an activity is for: members of these org units and their subtrees (none = everyone).
CREATE TABLE activity_audience (
    activity_id BIGINT NOT NULL REFERENCES activities (id),
    org_unit_id BIGINT NOT NULL REFERENCES org_units (id),
    PRIMARY KEY (activity_id, org_unit_id)
);
CREATE INDEX activity_audience_unit ON activity_audience (org_unit_id, activity_id);

CREATE TABLE activity_signups (
    id           {{id}},
    activity_id  BIGINT NOT NULL REFERENCES activities (id),
    member_id    BIGINT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('confirmed', 'waitlisted', 'cancelled')),
    -- From activities.signup_seq: arrival order, the waitlist's order.
    seq          BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    confirmed_at BIGINT,
    promoted_at  BIGINT,
    cancelled_at BIGINT,
    reminded_at  BIGINT,
    updated_at   BIGINT NOT NULL
);
-- No member twice among the active sign-ups of an activity; a cancelled one may sign up again.
CREATE UNIQUE INDEX activity_signups_active ON activity_signups (activity_id, member_id) WHERE status IN ('confirmed', 'waitlisted');
CREATE UNIQUE INDEX activity_signups_seq ON activity_signups (activity_id, seq);
CREATE INDEX activity_signups_status ON activity_signups (activity_id, status, seq);
CREATE INDEX activity_signups_member ON activity_signups (member_id, activity_id);

-- One row per member and activity: the check-in (at most one, checked_in_at) and the attendance
-- status. Meetings get a row per audience member (default absent) when created or read.
CREATE TABLE activity_attendance (
    activity_id   BIGINT NOT NULL REFERENCES activities (id),
    member_id     BIGINT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('present', 'late', 'absent', 'leave')),
    leave_kind    TEXT CHECK (leave_kind IN ('sick', 'official', 'personal')),
    reason        TEXT,
    -- default (expected, not seen yet) | checkin (scanned the venue's code) | manual (marked by a secretary)
    source        TEXT NOT NULL CHECK (source IN ('default', 'checkin', 'manual')),
    checked_in_at BIGINT,
    marked_by     TEXT,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (activity_id, member_id),
    CHECK ((status = 'leave') = (leave_kind IS NOT NULL))
);

-- What members are to be told (cancellation, promotion from the waitlist, reminder): one row per
-- member, activity and kind, so each is recorded exactly once whatever retries happen.
CREATE TABLE activity_notices (
    id          {{id}},
    activity_id BIGINT NOT NULL REFERENCES activities (id),
    member_id   BIGINT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('cancelled', 'promoted', 'reminder')),
    -- For promotions: the sign-up promoted (a member promoted, cancelled, re-signed and promoted again is told twice).
    signup_id   BIGINT NOT NULL DEFAULT 0,
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'skipped', 'failed')),
    error       TEXT,
    created_at  BIGINT NOT NULL,
    sent_at     BIGINT,
    UNIQUE (activity_id, member_id, kind, signup_id)
);
CREATE INDEX activity_notices_status ON activity_notices (status, id);
