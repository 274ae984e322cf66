-- Member submissions (投稿) and message-board posts (留言). Nothing here is public until an editor
-- approves it. Times are unix milliseconds; states are TEXT.

CREATE TABLE submissions (
    id {{id}},
    -- Given when the draft is submitted (TGyyyymmdd-NNNN); NULL while a draft.
    receipt_no TEXT UNIQUE,
    openid TEXT NOT NULL,
    -- chat | mp
    source TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    content TEXT NOT NULL DEFAULT '',
    -- JSON array of {"url", "media_id"?}
    images TEXT NOT NULL DEFAULT '[]',
    -- draft | pending | approved | rejected
    status TEXT NOT NULL,
    -- local | pass | review | risky | unchecked
    moderation_suggest TEXT,
    moderation_label TEXT,
    decided_by TEXT,
    decided_at BIGINT,
    reason TEXT,
    -- Drafts only: after this the draft is gone.
    draft_expires_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX submissions_status_id ON submissions (status, id);
CREATE INDEX submissions_openid ON submissions (openid, id);
-- At most one open draft per follower, whichever replica handles the message.
CREATE UNIQUE INDEX submissions_one_draft ON submissions (openid) WHERE status = 'draft';

CREATE TABLE board_posts (
    id {{id}},
    openid TEXT NOT NULL,
    source TEXT NOT NULL,
    content TEXT NOT NULL,
    -- pending | approved | rejected
    status TEXT NOT NULL,
    moderation_suggest TEXT,
    moderation_label TEXT,
    decided_by TEXT,
    decided_at BIGINT,
    reason TEXT,
    answer TEXT,
    answered_by TEXT,
    answered_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX board_posts_status_id ON board_posts (status, id);
CREATE INDEX board_posts_openid ON board_posts (openid, id);
