-- The whole schema for PostgreSQL 14 or newer: the tables, indexes and rules of the SQLite
-- schema after its nine migrations (server/migrations/sqlite/, whose comments explain the
-- layout in more depth), plus `message_stream`, which orders message commits across nodes.
--
-- Times are BIGINT Unix milliseconds and ids are Snowflakes issued by the application, as
-- on SQLite: `ORDER BY id` is creation order and keyset pagination needs no second column.

-- Accounts ---------------------------------------------------------------------------------

CREATE TABLE users (
    id            BIGINT PRIMARY KEY,
    -- Stored exactly as registered (the API admits only [a-z0-9_]). "C" collation: every
    -- comparison is bytewise, so the user search's range `>= prefix AND < prefix || '~'`
    -- holds ('~' sorts after every allowed character) whatever the database's locale.
    username      TEXT COLLATE "C" NOT NULL,
    display_name  TEXT   NOT NULL,
    -- PHC string (Argon2id, parameters included), so parameters can change later.
    password_hash TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);

-- Usernames are unique without regard to case (SQLite's NOCASE). Lookups and the prefix
-- search go through `lower(username)`, so this one index serves all three; `lower` keeps
-- the column's "C" collation, so the index orders bytewise too.
CREATE UNIQUE INDEX users_username ON users (lower(username));

CREATE TABLE sessions (
    -- SHA-256 of the bearer token: a leaked database does not leak usable tokens.
    token_hash BYTEA  PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Logout-everywhere and the expiry sweep look sessions up by user and by time.
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- The social graph --------------------------------------------------------------------------

-- Directed follows: (A, B) puts B's posts in A's feed.
CREATE TABLE follows (
    follower_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    followee_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
);

-- Fanout reads an author's followers; the primary key serves "whom do I follow".
CREATE INDEX follows_by_followee ON follows (followee_id, follower_id);
-- Follow lists are shown most recent first and paged by (time, user).
CREATE INDEX follows_following_by_time ON follows (follower_id, created_at, followee_id);
CREATE INDEX follows_followers_by_time ON follows (followee_id, created_at, follower_id);

-- The news feed ------------------------------------------------------------------------------

CREATE TABLE posts (
    id              BIGINT PRIMARY KEY,
    author_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content         TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    -- A retried POST /v1/me/feed with the same Idempotency-Key returns the first post.
    idempotency_key TEXT
);

-- Profile timelines and fanout-on-read page an author's posts by id.
CREATE INDEX posts_by_author ON posts (author_id, id);
-- Makes idempotent posting hold under concurrent retries too; the insert names this index
-- in `ON CONFLICT`, so a repeated key inserts nothing instead of aborting the transaction.
CREATE UNIQUE INDEX posts_idempotency ON posts (author_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE likes (
    post_id    BIGINT NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (post_id, user_id)
);

-- `liked_by_me` looks likes up by user for a page of posts.
CREATE INDEX likes_by_user ON likes (user_id, post_id);

-- Follower/following/post counts, kept exact by triggers in the same transaction as the
-- change. Fanout reads `followers` on every post to choose push or pull, and profiles show
-- all three; counting rows each time would cost O(followers).
CREATE TABLE user_stats (
    user_id   BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    followers BIGINT NOT NULL DEFAULT 0,
    following BIGINT NOT NULL DEFAULT 0,
    posts     BIGINT NOT NULL DEFAULT 0
);

CREATE FUNCTION user_stats_new_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_stats (user_id) VALUES (NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER user_stats_new_user AFTER INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION user_stats_new_user();

CREATE FUNCTION user_stats_follow() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r     RECORD;
    delta BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        r := NEW;
        delta := 1;
    ELSE
        r := OLD;
        delta := -1;
    END IF;
    -- A follow changes two users' rows. Unlike SQLite, PostgreSQL runs such transactions
    -- side by side: A following B while B follows A would lock the two rows in opposite
    -- orders and deadlock (one of them aborted after `deadlock_timeout`). Locking both in
    -- user id order first makes every follow and unfollow take them in the same order.
    PERFORM 1 FROM user_stats
      WHERE user_id IN (r.follower_id, r.followee_id)
      ORDER BY user_id
      FOR UPDATE;
    UPDATE user_stats SET followers = followers + delta WHERE user_id = r.followee_id;
    UPDATE user_stats SET following = following + delta WHERE user_id = r.follower_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER user_stats_follow AFTER INSERT OR DELETE ON follows
    FOR EACH ROW EXECUTE FUNCTION user_stats_follow();

CREATE FUNCTION user_stats_post() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE user_stats SET posts = posts + 1 WHERE user_id = NEW.author_id;
    ELSE
        UPDATE user_stats SET posts = posts - 1 WHERE user_id = OLD.author_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER user_stats_post AFTER INSERT OR DELETE ON posts
    FOR EACH ROW EXECUTE FUNCTION user_stats_post();

-- Fanout work, written in the same transaction as the post (or its deletion), so an
-- acknowledged post reaches every follower even if the process dies before or during the
-- fanout: rows left here are re-enqueued at start-up and by a periodic sweep, and removed
-- only when their fanout has completed. Fanout is idempotent, so doing one twice is safe.
-- Several nodes sweep the same table: the sweep claims rows with `FOR UPDATE SKIP LOCKED`.
CREATE TABLE fanout_outbox (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        TEXT   NOT NULL CHECK (kind IN ('publish', 'delete')),
    post_id     BIGINT NOT NULL,
    author_id   BIGINT NOT NULL,
    -- When the post was stored: fanout lag is measured from here.
    created_at  BIGINT NOT NULL,
    -- Last time a worker was handed this job; the sweep re-enqueues stale ones.
    enqueued_at BIGINT NOT NULL
);

-- Chat ---------------------------------------------------------------------------------------

-- Channels (1:1 and groups), members with read positions, and messages keyed by
-- (channel_id, message_id).
CREATE TABLE channels (
    id              BIGINT PRIMARY KEY,
    kind            TEXT   NOT NULL CHECK (kind IN ('dm', 'group')),
    name            TEXT   NOT NULL,
    creator_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- "smaller_id:larger_id" for a 1:1 channel: the UNIQUE constraint makes the pair's
    -- channel one and the same however many times (and however concurrently) it is opened.
    dm_key          TEXT UNIQUE,
    -- The last `seq` handed out; bumped in the messages' own transaction, so seqs are
    -- gap-free and never reused.
    last_seq        BIGINT NOT NULL DEFAULT 0,
    -- Id of the newest message, for "most recent activity first".
    last_message_id BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL
);

CREATE TABLE channel_members (
    channel_id           BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id              BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at            BIGINT NOT NULL,
    -- Read receipt: the newest message this member has read (drives unread counts).
    last_read_message_id BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, user_id)
);

-- "My channels" (conversation list, sync, authorisation).
CREATE INDEX channel_members_by_user ON channel_members (user_id, channel_id);

-- No index on `seq`: a channel's seqs are unique and gap-free by construction (handed out
-- from `channels.last_seq` in the transaction that stores the messages), and nothing reads
-- by seq. No index on `id` alone either: SQLite needs one for the `MAX(id)` that new ids
-- must exceed, and here that number is kept in `message_stream`.
CREATE TABLE messages (
    channel_id    BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    id            BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    sender_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content       TEXT   NOT NULL,
    client_msg_id TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (channel_id, id)
);

-- Sends are idempotent on (sender, client_msg_id): a retry finds the first message.
CREATE UNIQUE INDEX messages_client_msg_id ON messages (sender_id, client_msg_id);

-- The newest message id ever committed, in its one row. Every message commit locks this
-- row first (`SELECT … FOR UPDATE`), numbers its messages above `last_id`, and stores the
-- new `last_id` before it commits. The lock makes the message commits of all the nodes
-- sharing this database one after another, and PostgreSQL makes a commit visible before it
-- releases the transaction's locks, so the next writer reads the previous writer's
-- `last_id`: every new id exceeds every id already visible, whatever the nodes' clocks.
-- The messages any reader sees are then always the smallest ids, and a device's sync
-- cursor (`id > cursor`) never skips one (docs/decisions/0001-sync-cursor.md). Data copied
-- in from elsewhere must set `last_id` to the largest message id.
CREATE TABLE message_stream (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    last_id  BIGINT  NOT NULL
);

INSERT INTO message_stream (last_id) VALUES (0);

-- Notifications ------------------------------------------------------------------------------

-- A chat message for a member who was offline, a new post from someone followed. One row
-- per recipient and subject, keyed by (recipient, subject id): the id is the message's or
-- post's own Snowflake id, so a retried fanout or delivery cannot notify twice, rows sort by
-- the subject's time, and an insert touches one b-tree. The excerpt is copied so listing
-- needs no joins but the actor's (cached) user.
CREATE TABLE notifications (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    id         BIGINT NOT NULL,
    kind       TEXT   NOT NULL CHECK (kind IN ('message', 'post')),
    actor_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- For messages: their channel.
    channel_id BIGINT,
    excerpt    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, id),
    CHECK ((kind = 'message') = (channel_id IS NOT NULL))
);

-- A deleted post's notifications are found by the post's id alone, whoever holds them:
-- its author may have crossed the celebrity threshold since posting, so the followers who
-- were sent a row are no longer the ones the deletion's fanout walks.
CREATE INDEX notifications_by_subject ON notifications (id, user_id);

-- What each user has read: everything up to this notification id (one row per user, so
-- "mark all read" is one write however many there are).
CREATE TABLE notification_reads (
    user_id BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    up_to   BIGINT NOT NULL
);

-- The notification service's own durable queue. A post's fanout job, once every follower's
-- feed holds the post, is replaced by a row here in the same transaction; the notification
-- workers then write the followers' notifications and send the live `new_post` events.
-- Keeping this work out of the fanout job means a post reaches ten thousand feeds without
-- first waiting for ten thousand notification rows.
CREATE TABLE notification_outbox (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    post_id     BIGINT NOT NULL,
    author_id   BIGINT NOT NULL,
    -- When the post was stored.
    created_at  BIGINT NOT NULL,
    -- Last time a worker was handed this job; the sweep re-enqueues stale ones.
    enqueued_at BIGINT NOT NULL
);

-- Posts whose followers were not notified one row each: the author was at or above the
-- celebrity threshold when the post's notifications went out. As with the feed, the
-- followers pull these instead (fanout-on-read): a follower's notification list and unread
-- count read this table through their follows, so a post by an author with a million
-- followers costs one row here, not a million in `notifications`.
CREATE TABLE pulled_post_notifications (
    post_id   BIGINT PRIMARY KEY REFERENCES posts (id) ON DELETE CASCADE,
    author_id BIGINT NOT NULL
);

-- "Has an author I follow posted since …": probed per followed author when that is cheaper.
CREATE INDEX pulled_post_notifications_by_author
    ON pulled_post_notifications (author_id, post_id);
