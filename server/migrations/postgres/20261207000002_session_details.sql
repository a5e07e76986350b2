-- Sessions as their owner sees them (GET /v1/me/sessions): the device that opened one
-- (from its User-Agent), the client address it came from, and when it was last used
-- (NULL: not since it was opened).
ALTER TABLE sessions
    ADD COLUMN device         TEXT NOT NULL DEFAULT '',
    ADD COLUMN client_address TEXT,
    ADD COLUMN last_used_at   BIGINT;
