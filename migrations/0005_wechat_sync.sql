-- Follower sync (user/get + user/info/batchget) and WeChat tags.
ALTER TABLE followers ADD COLUMN unionid TEXT;
ALTER TABLE followers ADD COLUMN language TEXT;
-- The sync run that last saw this follower in user/get; followers not seen by a finished run are gone.
ALTER TABLE followers ADD COLUMN seen_by_sync BIGINT;

CREATE TABLE wechat_tags (
    id         BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    count      BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);

CREATE TABLE follower_tags (
    openid TEXT NOT NULL,
    tag_id BIGINT NOT NULL,
    PRIMARY KEY (openid, tag_id)
);
CREATE INDEX follower_tags_tag ON follower_tags (tag_id, openid);

-- Small durable key/value state for resumable jobs (e.g. the follower-sync cursor).
CREATE TABLE job_state (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
