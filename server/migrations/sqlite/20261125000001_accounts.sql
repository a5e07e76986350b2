-- Accounts, sessions and the social graph.
--
-- Times are INTEGER Unix milliseconds: cheap to compare and index, and converted to
-- RFC 3339 only at the API edge. IDs are Snowflakes issued by the application, so
-- `ORDER BY id` is creation order and keyset pagination needs no second column.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    -- Stored exactly as registered (the API admits only [a-z0-9_]); NOCASE keeps the
    -- uniqueness rule case-insensitive even if that rule is ever widened.
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    display_name  TEXT    NOT NULL,
    -- PHC string (Argon2id, parameters included), so parameters can change later.
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    -- SHA-256 of the bearer token: a leaked database does not leak usable tokens.
    token_hash BLOB    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Logout-everywhere and the expiry sweep look sessions up by user and by time.
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Directed follows: (A, B) puts B's posts in A's feed.
CREATE TABLE follows (
    follower_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    followee_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
) WITHOUT ROWID;

-- Fanout reads an author's followers; the primary key serves "whom do I follow".
CREATE INDEX follows_by_followee ON follows (followee_id, follower_id);

CREATE TABLE posts (
    id         INTEGER PRIMARY KEY,
    author_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- Profile timelines and fanout-on-read page an author's posts by id.
CREATE INDEX posts_by_author ON posts (author_id, id);
