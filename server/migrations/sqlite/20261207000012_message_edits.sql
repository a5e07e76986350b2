-- A sender may edit a message (`edited_at`: when last) or delete it (`deleted_at`: when;
-- its content is emptied). `seq` and `id` stay, so the channel's sequence keeps no gap.
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted_at INTEGER;
