-- Images uploaded for posts and chat messages (`POST /v1/media`). The files themselves
-- live in the blob store, named by the SHA-256 of their bytes (`{sha256}.{ext}`); two
-- uploads of the same picture share their files, so a file is deleted only when no row
-- names it any more.
CREATE TABLE media (
    id           INTEGER PRIMARY KEY,
    owner_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- `{sha256}.{ext}` of the image (at most 2048 px) and of its thumbnail (400 px).
    file         TEXT NOT NULL,
    thumbnail    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    alt          TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    -- What the upload is attached to: at most one of the two, each image used once.
    -- A post's id (no foreign key: deleting a post releases its media explicitly, and the
    -- collector finds rows whose post is gone).
    post_id      INTEGER,
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

-- The `Media` objects of a post or message, as the API's JSON array (NULL: none). Copied
-- at attach time, so reading a feed page or a sync batch needs no join: an upload does
-- not change once attached.
ALTER TABLE posts ADD COLUMN media TEXT;
ALTER TABLE messages ADD COLUMN media TEXT;
