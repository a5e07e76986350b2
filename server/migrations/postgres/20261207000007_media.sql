-- Images uploaded for posts and chat messages (`POST /v1/media`). The files themselves
-- live in the blob store, named by the SHA-256 of their bytes (`{sha256}.{ext}`); two
-- uploads of the same picture share their files, so a file is deleted only when no row
-- names it any more.
CREATE TABLE media (
    id           BIGINT PRIMARY KEY,
    owner_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- `{sha256}.{ext}` of the image (at most 2048 px) and of its thumbnail (400 px).
    file         TEXT NOT NULL,
    thumbnail    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    width        BIGINT NOT NULL,
    height       BIGINT NOT NULL,
    bytes        BIGINT NOT NULL,
    alt          TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    -- What the upload is attached to: at most one of the two, each image used once.
    -- A post's id (no foreign key: deleting a post releases its media explicitly, and the
    -- collector finds rows whose post is gone).
    post_id      BIGINT,
    -- The owner's `client_msg_id` of the chat message that carries it: claimed before the
    -- message's group commit, so a retry of the same send claims it again.
    message_key  TEXT
);
-- A post's images (deleting the post).
CREATE INDEX media_by_post ON media (post_id) WHERE post_id IS NOT NULL;
-- A message's images (deleting the message, and the collector's check that it exists).
CREATE INDEX media_by_message ON media (owner_id, message_key) WHERE message_key IS NOT NULL;
-- Uploads never attached, oldest first (the collector).
CREATE INDEX media_unattached ON media (created_at)
    WHERE post_id IS NULL AND message_key IS NULL;
-- Whether any row still names a file.
CREATE INDEX media_by_file ON media (file);
CREATE INDEX media_by_thumbnail ON media (thumbnail);

-- The files, for a cluster whose nodes share no disk: every node reads and writes them
-- here (`KITH_MEDIA_STORE=database`, the default on PostgreSQL). At most 10 MiB each.
CREATE TABLE media_blobs (
    name       TEXT PRIMARY KEY,
    data       BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- The `Media` objects of a post or message, as the API's JSON array (NULL: none). Copied
-- at attach time, so reading a feed page or a sync batch needs no join: an upload does
-- not change once attached.
ALTER TABLE posts ADD COLUMN media TEXT;
ALTER TABLE messages ADD COLUMN media TEXT;

-- Group commit of chat sends (see `storage/postgres/writer.rs`), as before, and also:
-- each send's media (`p_media`, the JSON array or NULL) is stored with its message, and
-- a retry is answered with the media first stored. The signature changes, so the function
-- is replaced whole.
DROP FUNCTION commit_messages(BIGINT[], BIGINT[], TEXT[], TEXT[], BIGINT[], BIGINT[]);
CREATE FUNCTION commit_messages(
    p_channels BIGINT[], p_senders BIGINT[], p_keys TEXT[], p_contents TEXT[],
    p_times BIGINT[], p_ids BIGINT[], p_media TEXT[])
RETURNS TABLE (ord BIGINT, outcome "char", channel_id BIGINT, id BIGINT, seq BIGINT,
               content TEXT, created_at BIGINT, members BIGINT[], hidden_from BIGINT[],
               media TEXT)
LANGUAGE plpgsql VOLATILE
-- Every lookup goes through an index. A plan cached while a table was a page long would
-- otherwise read it whole, and keep doing so as it grows (until the next ANALYZE). The
-- penalty this puts on the other plans' costs would start JIT compilation: off.
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_variable
DECLARE
    floor_id BIGINT;
    has_channel BOOLEAN;
    is_member BOOLEAN;
    -- Channels written so far by this call: the first message of each carries its members.
    written BIGINT[] := '{}';
    last_written BIGINT;
BEGIN
    -- The cluster's message commits, one at a time: this row lock is held until the
    -- commit. Each statement below takes a new snapshot (a VOLATILE function at READ
    -- COMMITTED), taken after the lock was granted, so it sees every message the previous
    -- holder committed, and every message this call stored before it.
    SELECT s.last_id INTO floor_id FROM message_stream s FOR UPDATE;
    IF p_ids[1] <= floor_id THEN
        -- Another node stored larger ids: nothing is written, the caller numbers again.
        ord := 0;
        outcome := 's';
        id := floor_id;
        RETURN NEXT;
        RETURN;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        ord := i;
        channel_id := NULL;
        id := NULL;
        seq := NULL;
        content := NULL;
        created_at := NULL;
        members := NULL;
        hidden_from := NULL;
        media := NULL;
        SELECT EXISTS (SELECT 1 FROM channels c WHERE c.id = p_channels[i]),
               EXISTS (SELECT 1 FROM channel_members m
                        WHERE m.channel_id = p_channels[i] AND m.user_id = p_senders[i])
          INTO has_channel, is_member;
        IF NOT has_channel THEN
            outcome := 'c';
        ELSIF NOT is_member THEN
            outcome := 'm';
        ELSE
            -- A retry of a stored message, or a repeat within this batch (stored by this
            -- call a few sends ago): answered with the message first stored, maybe in
            -- another channel. `messages_client_msg_id` is unique: at most one row.
            SELECT x.channel_id, x.id, x.seq, x.content, x.created_at, x.media
              INTO channel_id, id, seq, content, created_at, media
              FROM messages x
             WHERE x.sender_id = p_senders[i] AND x.client_msg_id = p_keys[i];
            IF FOUND THEN
                outcome := 'e';
            ELSIF EXISTS (
                -- A 1:1 whose two members are apart: a block either way.
                SELECT 1 FROM channels c
                  JOIN channel_members o ON o.channel_id = c.id AND o.user_id <> p_senders[i]
                 WHERE c.id = p_channels[i] AND c.kind = 'dm'
                   AND (EXISTS (SELECT 1 FROM blocks b
                                 WHERE b.blocker_id = p_senders[i] AND b.blocked_id = o.user_id)
                        OR EXISTS (SELECT 1 FROM blocks b
                                    WHERE b.blocker_id = o.user_id AND b.blocked_id = p_senders[i])))
            THEN
                outcome := 'b';
            ELSE
                outcome := 'n';
                UPDATE channels c SET last_seq = c.last_seq + 1, last_message_id = p_ids[i]
                 WHERE c.id = p_channels[i]
                RETURNING c.last_seq INTO seq;
                INSERT INTO messages (channel_id, id, seq, sender_id, content,
                                      client_msg_id, created_at, media)
                VALUES (p_channels[i], p_ids[i], seq, p_senders[i], p_contents[i],
                        p_keys[i], p_times[i], p_media[i]);
                channel_id := p_channels[i];
                id := p_ids[i];
                created_at := p_times[i];
                last_written := p_ids[i];
                -- The members who blocked the sender get the message hidden.
                SELECT COALESCE(array_agg(b.blocker_id), '{}') INTO hidden_from
                  FROM blocks b
                  JOIN channel_members m
                    ON m.channel_id = p_channels[i] AND m.user_id = b.blocker_id
                 WHERE b.blocked_id = p_senders[i];
                IF NOT p_channels[i] = ANY (written) THEN
                    written := written || p_channels[i];
                    SELECT COALESCE(array_agg(m.user_id), '{}') INTO members
                      FROM channel_members m WHERE m.channel_id = p_channels[i];
                END IF;
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
    IF last_written IS NOT NULL THEN
        -- The batch's ids increase: the last one written is the largest.
        UPDATE message_stream SET last_id = last_written;
    END IF;
END
$$;
