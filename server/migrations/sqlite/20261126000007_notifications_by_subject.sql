-- A deleted post's notifications are found by the post's id alone, whoever holds them:
-- its author may have crossed the celebrity threshold since posting, so the followers
-- who were sent a row are no longer the ones the deletion's fanout walks.
CREATE INDEX notifications_by_subject ON notifications (id, user_id);
