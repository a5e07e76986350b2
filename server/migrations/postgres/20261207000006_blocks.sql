-- Blocks: (A, B) means A blocked B. Either direction keeps the two apart: no follows,
-- no 1:1 messages, neither sees the other's posts or presence; in groups they share, B's
-- messages reach A hidden.
CREATE TABLE blocks (
    blocker_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
-- Who blocked a user (a send's hidden-from list, the reverse check).
CREATE INDEX blocks_by_blocked ON blocks (blocked_id, blocker_id);
-- A user's block list, most recent first.
CREATE INDEX blocks_by_time ON blocks (blocker_id, created_at, blocked_id);

-- Group commit of chat sends (see `storage/postgres/writer.rs`), as before, and also:
-- a send to a 1:1 whose members are apart by a block is refused (`b`), and each new
-- message names the members who blocked its sender (`hidden_from`), who get it hidden.
-- The answer has a new column, so the function is replaced whole.
DROP FUNCTION commit_messages(BIGINT[], BIGINT[], TEXT[], TEXT[], BIGINT[], BIGINT[]);
CREATE FUNCTION commit_messages(
    p_channels BIGINT[], p_senders BIGINT[], p_keys TEXT[], p_contents TEXT[],
    p_times BIGINT[], p_ids BIGINT[])
RETURNS TABLE (ord BIGINT, outcome "char", channel_id BIGINT, id BIGINT, seq BIGINT,
               content TEXT, created_at BIGINT, members BIGINT[], hidden_from BIGINT[])
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
            SELECT x.channel_id, x.id, x.seq, x.content, x.created_at
              INTO channel_id, id, seq, content, created_at
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
                                      client_msg_id, created_at)
                VALUES (p_channels[i], p_ids[i], seq, p_senders[i], p_contents[i],
                        p_keys[i], p_times[i]);
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
