-- An account its owner deleted (`DELETE /v1/me`): the row stays, renamed `deleted_{id}`,
-- so the messages it sent keep a sender ("Deleted user").
ALTER TABLE users ADD COLUMN deleted_at INTEGER;

-- The usernames of deleted accounts, kept from new accounts until `until` (30 days).
CREATE TABLE username_holds (
    username TEXT    PRIMARY KEY COLLATE NOCASE,
    until    INTEGER NOT NULL
) WITHOUT ROWID;
