-- What a user says about themselves (`PATCH /v1/me`); empty until they set it.
ALTER TABLE users ADD COLUMN bio TEXT NOT NULL DEFAULT '';
