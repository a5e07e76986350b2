-- Blocks: (A, B) means A blocked B. Either direction keeps the two apart: no follows,
-- no 1:1 messages, neither sees the other's posts or presence; in groups they share, B's
-- messages reach A hidden.
CREATE TABLE blocks (
    blocker_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
) WITHOUT ROWID;
-- Who blocked a user (a send's hidden-from list, the reverse check).
CREATE INDEX blocks_by_blocked ON blocks (blocked_id, blocker_id);
-- A user's block list, most recent first.
CREATE INDEX blocks_by_time ON blocks (blocker_id, created_at, blocked_id);
