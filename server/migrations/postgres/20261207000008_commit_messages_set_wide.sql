-- Group commit of chat sends (see `storage/postgres/writer.rs`), deciding a batch's sends
-- with one statement over the whole batch instead of a loop of lookups per send. Same
-- arguments, same answer, the same decisions in the same order of precedence.
--
-- The loop cost the database ~100 µs of CPU per send (seven statements, each started, run
-- and ended by the executor): at 5,000 sends/s half of a commit went to deciding its sends
-- one by one, so each commit took longer and the next batch grew. This statement makes the
-- same index probes in one executor run per batch (~43 µs per send, ~0.3 ms per call).
-- Its plan is generic, made once per connection and cached (a custom plan for each call's
-- arrays would be planned on every call), so its shape must not depend on the tables'
-- sizes when it was made: every lookup is a `LATERAL … LIMIT 1` subquery, and sequential,
-- bitmap, hash and merge scans and joins are off, which leaves index probes per send.
CREATE OR REPLACE FUNCTION commit_messages(
    p_channels BIGINT[], p_senders BIGINT[], p_keys TEXT[], p_contents TEXT[],
    p_times BIGINT[], p_ids BIGINT[], p_media TEXT[])
RETURNS TABLE (ord BIGINT, outcome "char", channel_id BIGINT, id BIGINT, seq BIGINT,
               content TEXT, created_at BIGINT, members BIGINT[], hidden_from BIGINT[],
               media TEXT)
LANGUAGE plpgsql VOLATILE
-- Index probes only (see above), and no JIT compilation, which the penalties these
-- settings put on the other plans' costs would start.
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    floor_id BIGINT;
BEGIN
    -- The cluster's message commits, one at a time: this row lock is held until the
    -- commit. The statement below takes its snapshot after the lock was granted (a
    -- VOLATILE function at READ COMMITTED), so it sees every message the previous holder
    -- committed.
    SELECT s.last_id INTO floor_id FROM message_stream s FOR UPDATE;
    IF p_ids[1] <= floor_id THEN
        -- Another node stored larger ids: nothing is written, the caller numbers again.
        RETURN QUERY SELECT 0::BIGINT, 's'::"char", NULL::BIGINT, floor_id, NULL::BIGINT,
                            NULL::TEXT, NULL::BIGINT, NULL::BIGINT[], NULL::BIGINT[],
                            NULL::TEXT;
        RETURN;
    END IF;
    RETURN QUERY
    WITH sends AS (
        SELECT u.s_ord, u.s_channel, u.s_sender, u.s_key, u.s_content, u.s_time, u.s_id,
               u.s_media
          FROM unnest(p_channels, p_senders, p_keys, p_contents, p_times, p_ids, p_media)
               WITH ORDINALITY
               AS u(s_channel, s_sender, s_key, s_content, s_time, s_id, s_media, s_ord)
    ),
    -- Each send decided on its own against what was stored before this call, in the
    -- order the loop decided: no channel, not a member, a retry of a stored message, a
    -- 1:1 whose two members are apart by a block (either way), or new. Each lookup is a
    -- subquery of its own (`LIMIT 1`: by a unique key), so it stays a probe of an index
    -- per send whatever the planner thinks of the tables' sizes. Materialized: the verdict
    -- is read twice below, and inlined its block check would run twice.
    decided AS MATERIALIZED (
        SELECT s.*, c.last_seq AS base_seq,
               x.channel_id AS x_channel, x.id AS x_id, x.seq AS x_seq,
               x.content AS x_content, x.created_at AS x_time, x.media AS x_media,
               CASE
                   WHEN c.id IS NULL THEN 'c'
                   WHEN m.user_id IS NULL THEN 'm'
                   WHEN x.id IS NOT NULL THEN 'e'
                   WHEN c.kind = 'dm' AND EXISTS (
                       SELECT 1 FROM channel_members o
                        WHERE o.channel_id = s.s_channel AND o.user_id <> s.s_sender
                          AND (EXISTS (SELECT 1 FROM blocks b
                                        WHERE b.blocker_id = s.s_sender
                                          AND b.blocked_id = o.user_id)
                               OR EXISTS (SELECT 1 FROM blocks b
                                           WHERE b.blocker_id = o.user_id
                                             AND b.blocked_id = s.s_sender))) THEN 'b'
                   ELSE 'n'
               END::"char" AS verdict
          FROM sends s
          LEFT JOIN LATERAL (
              SELECT c.id, c.kind, c.last_seq FROM channels c
               WHERE c.id = s.s_channel LIMIT 1) c ON TRUE
          LEFT JOIN LATERAL (
              SELECT m.user_id FROM channel_members m
               WHERE m.channel_id = s.s_channel AND m.user_id = s.s_sender LIMIT 1) m ON TRUE
          LEFT JOIN LATERAL (
              SELECT x.channel_id, x.id, x.seq, x.content, x.created_at, x.media
                FROM messages x
               WHERE x.sender_id = s.s_sender AND x.client_msg_id = s.s_key LIMIT 1) x ON TRUE
    ),
    -- The first send of each (sender, client_msg_id) decided new becomes a message. A
    -- later one decided new or apart repeats it (the loop found it stored); one decided
    -- apart before it stays apart.
    keyed AS (
        SELECT d.*,
               min(d.s_ord) FILTER (WHERE d.verdict = 'n')
                   OVER (PARTITION BY d.s_sender, d.s_key) AS first_new
          FROM decided d
    ),
    -- New messages take their channel's next `seq`s in batch order; the first of each
    -- channel carries the channel's members.
    numbered AS (
        SELECT k.*, k.s_ord = k.first_new AS is_new,
               k.base_seq + count(*) FILTER (WHERE k.s_ord = k.first_new)
                   OVER (PARTITION BY k.s_channel ORDER BY k.s_ord
                         ROWS UNBOUNDED PRECEDING) AS new_seq,
               count(*) FILTER (WHERE k.s_ord = k.first_new)
                   OVER (PARTITION BY k.s_channel ORDER BY k.s_ord
                         ROWS UNBOUNDED PRECEDING) = 1 AS first_in_channel
          FROM keyed k
    ),
    -- What a repeat answers: the message its key's first new send became.
    answered AS (
        SELECT n.*,
               n.verdict IN ('n', 'b') AND n.first_new < n.s_ord AS is_repeat,
               max(CASE WHEN n.is_new THEN n.s_channel END) OVER per_key AS r_channel,
               max(CASE WHEN n.is_new THEN n.s_id END) OVER per_key AS r_id,
               max(CASE WHEN n.is_new THEN n.new_seq END) OVER per_key AS r_seq,
               max(CASE WHEN n.is_new THEN n.s_content END) OVER per_key AS r_content,
               max(CASE WHEN n.is_new THEN n.s_time END) OVER per_key AS r_time,
               max(CASE WHEN n.is_new THEN n.s_media END) OVER per_key AS r_media
          FROM numbered n
        WINDOW per_key AS (PARTITION BY n.s_sender, n.s_key)
    ),
    inserted AS (
        INSERT INTO messages (channel_id, id, seq, sender_id, content, client_msg_id,
                              created_at, media)
        SELECT a.s_channel, a.s_id, a.new_seq, a.s_sender, a.s_content, a.s_key, a.s_time,
               a.s_media
          FROM answered a
         WHERE a.is_new
    ),
    bumped AS (
        UPDATE channels c
           SET last_seq = c.last_seq + t.n, last_message_id = t.last_id
          FROM (SELECT a.s_channel, count(*) AS n, max(a.s_id) AS last_id
                  FROM answered a WHERE a.is_new GROUP BY a.s_channel) t
         WHERE c.id = t.s_channel
    ),
    streamed AS (
        -- The batch's ids increase: the largest written is the stream's new `last_id`.
        UPDATE message_stream s SET last_id = t.last_id
          FROM (SELECT max(a.s_id) AS last_id FROM answered a WHERE a.is_new) t
         WHERE t.last_id IS NOT NULL
    )
    SELECT a.s_ord,
           CASE WHEN a.is_new THEN 'n' WHEN a.is_repeat THEN 'e' ELSE a.verdict END::"char",
           CASE
               WHEN a.is_new THEN a.s_channel
               WHEN a.is_repeat THEN a.r_channel
               WHEN a.verdict = 'e' THEN a.x_channel
           END,
           CASE
               WHEN a.is_new THEN a.s_id WHEN a.is_repeat THEN a.r_id
               WHEN a.verdict = 'e' THEN a.x_id
           END,
           CASE
               WHEN a.is_new THEN a.new_seq WHEN a.is_repeat THEN a.r_seq
               WHEN a.verdict = 'e' THEN a.x_seq
           END,
           -- A new message's content and media are the send's own: not sent back.
           CASE WHEN a.is_repeat THEN a.r_content WHEN a.verdict = 'e' THEN a.x_content END,
           CASE
               WHEN a.is_new THEN a.s_time WHEN a.is_repeat THEN a.r_time
               WHEN a.verdict = 'e' THEN a.x_time
           END,
           CASE
               WHEN a.is_new AND a.first_in_channel THEN
                   (SELECT COALESCE(array_agg(m.user_id), '{}') FROM channel_members m
                     WHERE m.channel_id = a.s_channel)
           END,
           -- The members who blocked the sender get the message hidden.
           CASE
               WHEN a.is_new THEN
                   (SELECT COALESCE(array_agg(b.blocker_id), '{}')
                      FROM blocks b
                      JOIN channel_members m
                        ON m.channel_id = a.s_channel AND m.user_id = b.blocker_id
                     WHERE b.blocked_id = a.s_sender)
           END,
           CASE WHEN a.is_repeat THEN a.r_media WHEN a.verdict = 'e' THEN a.x_media END
      FROM answered a
     ORDER BY a.s_ord;
END
$$;
