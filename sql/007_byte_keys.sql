-- Room names, user ids and refs compare as bytes (COLLATE "C") whatever
-- the database's default collation.
--
-- They are keys, never sorted for people: what matters is that equal is
-- equal and that the order is fixed. Under a linguistic collation (a
-- cluster made with en_US.UTF-8, or an ICU locale, as most are) every
-- comparison inside the write path's five indexes (rooms by name,
-- messages by room and id, room and seq, room, user and ref, room_events
-- by room and seq) goes through the collation library instead of memcmp:
-- on an en_US.UTF-8 database chat_post_batch cost 102 and 90 µs a message
-- at 100 messages a call before this, 74 and 66 µs after
-- (bench/pg-batch.sh, docs/performance.md "Byte-order keys"). The lock
-- order (006) was byte order already; it is now the columns' own order.
--
-- The type does not change, so the tables are not rewritten, but each
-- index on these columns is rebuilt under an ACCESS EXCLUSIVE lock on its
-- table: on a large messages table, apply this at a quiet time
-- (docs/operations.md).
ALTER TABLE rooms ALTER COLUMN name TYPE text COLLATE "C";
ALTER TABLE messages
    ALTER COLUMN room TYPE text COLLATE "C",
    ALTER COLUMN user_id TYPE text COLLATE "C",
    ALTER COLUMN ref TYPE text COLLATE "C";
ALTER TABLE room_events ALTER COLUMN room TYPE text COLLATE "C";
