-- Posts whose followers were not notified one row each: the author was at or above the
-- celebrity threshold when the post's notifications went out. As with the feed, the
-- followers pull these instead (fanout-on-read): a follower's notification list and unread
-- count read this table through their follows, so a post by an author with a million
-- followers costs one row here, not a million in `notifications`.
CREATE TABLE pulled_post_notifications (
    post_id   INTEGER PRIMARY KEY REFERENCES posts (id) ON DELETE CASCADE,
    author_id INTEGER NOT NULL
);

-- "Has an author I follow posted since …": probed per followed author when that is cheaper.
CREATE INDEX pulled_post_notifications_by_author ON pulled_post_notifications (author_id, post_id);
