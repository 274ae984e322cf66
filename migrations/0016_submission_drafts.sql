-- A submission (投稿) turned into an article draft by an editor: the article it became, so doing it
-- again opens the same draft. Deleting the draft frees the submission to be turned again.
ALTER TABLE submissions ADD COLUMN article_id BIGINT REFERENCES articles (id) ON DELETE SET NULL;
