-- The message writer inserts a batch of messages with one statement. With immediate
-- foreign keys, SQLite keeps a statement journal for such a statement (a copy of every
-- page it changes, so that a violation undoes that statement alone). The writer turned
-- the checks into deferred ones with `PRAGMA defer_foreign_keys = ON` in each transaction,
-- but setting a flag pragma expires every prepared statement of the connection: every
-- batch then compiled its statements again (a third of the writer thread's time).
-- Declaring the keys deferred does the same once: they are checked at COMMIT, and the
-- writer already rolls back the whole transaction on any error. The cascades on delete
-- still happen at once.
--
-- SQLite cannot change a constraint in place: the table is rebuilt, with its indexes.
CREATE TABLE messages_deferred (
    channel_id    INTEGER NOT NULL
                  REFERENCES channels (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    id            INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    sender_id     INTEGER NOT NULL
                  REFERENCES users (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    content       TEXT    NOT NULL,
    client_msg_id TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (channel_id, id)
) WITHOUT ROWID;

INSERT INTO messages_deferred (channel_id, id, seq, sender_id, content, client_msg_id, created_at)
SELECT channel_id, id, seq, sender_id, content, client_msg_id, created_at FROM messages;

DROP TABLE messages;
ALTER TABLE messages_deferred RENAME TO messages;

-- Sends are idempotent on (sender, client_msg_id): a retry finds the first message.
CREATE UNIQUE INDEX messages_client_msg_id ON messages (sender_id, client_msg_id);
-- A new message id must exceed every stored one; this index makes that MAX(id) one lookup.
CREATE INDEX messages_by_id ON messages (id);
