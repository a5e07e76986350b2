-- Notifications: a chat message for a member who was offline, a new post from someone
-- followed. One row per recipient; the excerpt is copied so listing needs no joins but
-- the actor's (cached) user.

CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('message', 'post')),
    actor_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id INTEGER,
    message_id INTEGER,
    post_id    INTEGER,
    excerpt    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    read_at    INTEGER,
    CHECK ((kind = 'message') = (message_id IS NOT NULL AND channel_id IS NOT NULL)),
    CHECK ((kind = 'post') = (post_id IS NOT NULL))
);

-- Fanout and delivery are at-least-once: the same event notifies a user once.
CREATE UNIQUE INDEX notifications_once ON notifications (user_id, kind, COALESCE(message_id, post_id));
-- A user's list, newest first (keyset paging on id).
CREATE INDEX notifications_by_user ON notifications (user_id, id);
-- The badge: unread ones only.
CREATE INDEX notifications_unread ON notifications (user_id, id) WHERE read_at IS NULL;
-- A deleted post takes its notifications with it.
CREATE INDEX notifications_by_post ON notifications (post_id) WHERE post_id IS NOT NULL;
