-- Followers of the official account and the content the webhook answers with.
-- Times are unix milliseconds (UTC); states are TEXT.
CREATE TABLE followers (
    openid              TEXT PRIMARY KEY,
    status              TEXT NOT NULL CHECK (status IN ('subscribed', 'unsubscribed')),
    scene               TEXT,
    subscribed_at       BIGINT,
    unsubscribed_at     BIGINT,
    last_interaction_at BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX followers_status ON followers (status, openid);

CREATE TABLE categories (
    id         {{id}},
    name       TEXT NOT NULL UNIQUE,
    menu_key   TEXT UNIQUE,
    position   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE articles (
    id           {{id}},
    category_id  BIGINT NOT NULL REFERENCES categories (id),
    title        TEXT NOT NULL,
    summary      TEXT NOT NULL DEFAULT '',
    cover_url    TEXT,
    body_md      TEXT NOT NULL DEFAULT '',
    body_html    TEXT NOT NULL DEFAULT '',
    author       TEXT,
    source       TEXT,
    status       TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'review', 'published', 'archived')),
    published_at BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX articles_category_published ON articles (category_id, status, published_at);
CREATE INDEX articles_published ON articles (status, published_at);
