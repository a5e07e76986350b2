-- The notification service's own durable queue. A post's fanout job, once every follower's
-- feed holds the post, is replaced by a row here in the same transaction; the notification
-- workers then write the followers' notifications and send the live `new_post` events.
-- Keeping this work out of the fanout job means a post reaches ten thousand feeds without
-- first waiting for ten thousand notification rows.
CREATE TABLE notification_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    post_id     INTEGER NOT NULL,
    author_id   INTEGER NOT NULL,
    -- When the post was stored.
    created_at  INTEGER NOT NULL,
    -- Last time a worker was handed this job; the sweep re-enqueues stale ones.
    enqueued_at INTEGER NOT NULL
);
