-- Notifications: a chat message for a member who was offline, a new post from someone
-- followed. One row per recipient and subject, keyed by (recipient, subject id): the id is
-- the message's or post's own Snowflake id, so a retried fanout or delivery cannot notify
-- twice, rows sort by the subject's time, and an insert touches one b-tree. The excerpt is
-- copied so listing needs no joins but the actor's (cached) user.

CREATE TABLE notifications (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    id         INTEGER NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('message', 'post')),
    actor_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- For messages: their channel.
    channel_id INTEGER,
    excerpt    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, id),
    CHECK ((kind = 'message') = (channel_id IS NOT NULL))
) WITHOUT ROWID;

-- What each user has read: everything up to this notification id (one row per user, so
-- "mark all read" is one write however many there are).
CREATE TABLE notification_reads (
    user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    up_to   INTEGER NOT NULL
);
