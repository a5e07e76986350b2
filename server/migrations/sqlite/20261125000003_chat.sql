-- Chat: channels (1:1 and groups), members with read positions, and messages keyed by
-- (channel_id, message_id), the key-value layout of the book.

CREATE TABLE channels (
    id          INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('dm', 'group')),
    name        TEXT    NOT NULL,
    creator_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- "smaller_id:larger_id" for a 1:1 channel: the UNIQUE index makes the pair's channel
    -- one and the same however many times (and however concurrently) it is opened.
    dm_key      TEXT UNIQUE,
    -- The last `seq` handed out; bumped in the message's own transaction, so seqs are
    -- gap-free and never reused.
    last_seq    INTEGER NOT NULL DEFAULT 0,
    -- Id of the newest message, for "most recent activity first".
    last_message_id INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

CREATE TABLE channel_members (
    channel_id INTEGER NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at  INTEGER NOT NULL,
    -- Read receipt: the newest message this member has read (drives unread counts).
    last_read_message_id INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, user_id)
) WITHOUT ROWID;

-- "My channels" (conversation list, sync, authorisation).
CREATE INDEX channel_members_by_user ON channel_members (user_id, channel_id);

CREATE TABLE messages (
    channel_id    INTEGER NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    id            INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    sender_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content       TEXT    NOT NULL,
    client_msg_id TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (channel_id, id)
) WITHOUT ROWID;

-- Sends are idempotent on (sender, client_msg_id): a retry finds the first message.
CREATE UNIQUE INDEX messages_client_msg_id ON messages (sender_id, client_msg_id);
-- A seq is used once per channel.
CREATE UNIQUE INDEX messages_seq ON messages (channel_id, seq);

-- A new message id must exceed every stored one (nodes' clocks may disagree); this index
-- makes that MAX(id) a single lookup.
CREATE INDEX messages_by_id ON messages (id);
