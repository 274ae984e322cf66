-- Content model: scheduled publishing, article tags, focus banners (横幅焦点).
-- Times are unix milliseconds (UTC); states are TEXT.

-- Set on a draft/review article that is to be published at that time (a worker promotes it).
ALTER TABLE articles ADD COLUMN publish_at BIGINT;
ALTER TABLE articles ADD COLUMN archived_at BIGINT;
CREATE INDEX articles_publish_at ON articles (publish_at) WHERE publish_at IS NOT NULL;
CREATE INDEX articles_status_updated ON articles (status, updated_at);

CREATE TABLE article_tags (
    article_id BIGINT NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    PRIMARY KEY (article_id, tag)
);
CREATE INDEX article_tags_tag ON article_tags (tag, article_id);

CREATE TABLE banners (
    id          {{id}},
    title       TEXT NOT NULL,
    image_url   TEXT NOT NULL,
    article_id  BIGINT REFERENCES articles (id),
    link_url    TEXT,
    position    BIGINT NOT NULL DEFAULT 0,
    valid_from  BIGINT,
    valid_until BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    CHECK (article_id IS NULL OR link_url IS NULL),
    CHECK (valid_from IS NULL OR valid_until IS NULL OR valid_from < valid_until)
);
CREATE INDEX banners_position ON banners (position, id);
CREATE INDEX banners_article ON banners (article_id);
