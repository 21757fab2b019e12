-- Rooms are locked in one order by every writer, new rooms included, so
-- concurrent writes cannot deadlock. chat_lock_rooms used to lock the
-- rooms that existed in one statement, then create the missing ones: a
-- new room was taken after existing rooms that sort after it. A
-- transaction doing the same rooms one at a time in name order (the
-- store's chat_post_one calls) could then hold the new room while this
-- one held a later room it needed: a deadlock, broken by PostgreSQL after
-- deadlock_timeout. Now, when a room is missing, every room is locked (or
-- created, then locked: chat_lock_room, as edits and deletes do) one at
-- a time in name order; when none is, one statement locks them all in
-- that order, as before. Rooms are never deleted, so a room seen without
-- a lock is still there to lock.
--
-- The order is byte order (COLLATE "C") whatever the database's
-- collation: the store sorts batches with strcmp.
CREATE OR REPLACE FUNCTION chat_lock_rooms(p_rooms text[], OUT names text[], OUT seqs bigint[],
                                           OUT tids tid[])
LANGUAGE plpgsql AS $$
DECLARE
    v_name text;
BEGIN
    IF (SELECT count(*) FROM rooms r WHERE r.name = ANY (p_rooms)) < cardinality(p_rooms) THEN
        FOR v_name IN SELECT n FROM unnest(p_rooms) n ORDER BY n COLLATE "C" LOOP
            PERFORM chat_lock_room(v_name);
        END LOOP;
    END IF;
    SELECT array_agg(l.name), array_agg(l.seq), array_agg(l.ctid)
      INTO names, seqs, tids
      FROM (SELECT r.name, r.seq, r.ctid FROM rooms r
             WHERE r.name = ANY (p_rooms) ORDER BY r.name COLLATE "C" FOR UPDATE) l;
END
$$;
