-- Rooms and their change counter, messages, and the log of changes.
--
-- rooms.seq is the room's latest change number. Every change (new
-- message, edit, delete) locks the room's row, takes seq + 1 and commits
-- with it, so seq order is commit order and there are no gaps: a
-- rolled-back change gives its number back.
CREATE TABLE rooms (
    name text PRIMARY KEY,
    seq  bigint NOT NULL DEFAULT 0
);

CREATE SEQUENCE messages_id_seq;

-- One row per message, holding its current state. seq is the message's
-- latest change, created_seq its creation: "what changed since N" is one
-- indexed range on (room, seq).
CREATE TABLE messages (
    id          bigint PRIMARY KEY,
    room        text NOT NULL REFERENCES rooms (name),
    user_id     text NOT NULL,
    user_name   text NOT NULL,
    body        text NOT NULL,
    ref         text,
    created_at  timestamptz NOT NULL,
    edited_at   timestamptz,
    deleted_at  timestamptz,
    seq         bigint NOT NULL,
    created_seq bigint NOT NULL,
    -- A resent message (same user, room and ref) is not stored twice.
    CONSTRAINT messages_room_user_ref UNIQUE (room, user_id, ref)
);

-- Newest-first pages of a room, and cursors by id.
CREATE INDEX messages_room_id ON messages (room, id DESC);
CREATE INDEX messages_room_seq ON messages (room, seq);

-- Every change as it was broadcast, by room and seq: a worker that sees a
-- gap in a room's seq (a lost PUBLISH, a Redis outage) reads the missing
-- events from here. Old rows may be pruned (docs/operations.md).
CREATE TABLE room_events (
    room       text NOT NULL,
    seq        bigint NOT NULL,
    payload    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room, seq)
);
