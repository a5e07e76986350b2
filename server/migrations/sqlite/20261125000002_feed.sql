-- News feed: idempotent posting, likes, per-user counters and the fanout outbox.

-- A retried POST /v1/me/feed with the same Idempotency-Key returns the first post; the
-- partial unique index makes that hold under concurrent retries too.
ALTER TABLE posts ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX posts_idempotency ON posts (author_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE likes (
    post_id    INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (post_id, user_id)
) WITHOUT ROWID;

-- `liked_by_me` looks likes up by user for a page of posts.
CREATE INDEX likes_by_user ON likes (user_id, post_id);

-- Follower/following/post counts, kept exact by triggers in the same transaction as the
-- change. Fanout reads `followers` on every post to choose push or pull, and profiles show
-- all three; counting rows each time would cost O(followers).
CREATE TABLE user_stats (
    user_id   INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    followers INTEGER NOT NULL DEFAULT 0,
    following INTEGER NOT NULL DEFAULT 0,
    posts     INTEGER NOT NULL DEFAULT 0
);

INSERT INTO user_stats (user_id, followers, following, posts)
SELECT u.id,
       (SELECT COUNT(*) FROM follows WHERE followee_id = u.id),
       (SELECT COUNT(*) FROM follows WHERE follower_id = u.id),
       (SELECT COUNT(*) FROM posts WHERE author_id = u.id)
FROM users u;

CREATE TRIGGER user_stats_new_user AFTER INSERT ON users BEGIN
    INSERT INTO user_stats (user_id) VALUES (NEW.id);
END;
CREATE TRIGGER user_stats_follow AFTER INSERT ON follows BEGIN
    UPDATE user_stats SET followers = followers + 1 WHERE user_id = NEW.followee_id;
    UPDATE user_stats SET following = following + 1 WHERE user_id = NEW.follower_id;
END;
CREATE TRIGGER user_stats_unfollow AFTER DELETE ON follows BEGIN
    UPDATE user_stats SET followers = followers - 1 WHERE user_id = OLD.followee_id;
    UPDATE user_stats SET following = following - 1 WHERE user_id = OLD.follower_id;
END;
CREATE TRIGGER user_stats_post AFTER INSERT ON posts BEGIN
    UPDATE user_stats SET posts = posts + 1 WHERE user_id = NEW.author_id;
END;
CREATE TRIGGER user_stats_unpost AFTER DELETE ON posts BEGIN
    UPDATE user_stats SET posts = posts - 1 WHERE user_id = OLD.author_id;
END;

-- Fanout work, written in the same transaction as the post (or its deletion), so an
-- acknowledged post reaches every follower even if the process dies before or during the
-- fanout: rows left here are re-enqueued at start-up and by a periodic sweep, and removed
-- only when their fanout has completed. Fanout is idempotent, so doing one twice is safe.
CREATE TABLE fanout_outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL CHECK (kind IN ('publish', 'delete')),
    post_id    INTEGER NOT NULL,
    author_id  INTEGER NOT NULL,
    -- When the post was stored: fanout lag is measured from here.
    created_at INTEGER NOT NULL,
    -- Last time a worker was handed this job; the sweep re-enqueues stale ones.
    enqueued_at INTEGER NOT NULL
);

-- Follow lists are shown most recent first and paged by (time, user).
CREATE INDEX follows_following_by_time ON follows (follower_id, created_at, followee_id);
CREATE INDEX follows_followers_by_time ON follows (followee_id, created_at, follower_id);
