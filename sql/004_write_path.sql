-- Cheaper and steadier writes of new messages (docs/performance.md,
-- "PostgreSQL"). Profiles of chat_post_batch under load showed:
--
-- * chat_ts and chat_user_json were declared IMMUTABLE around STABLE
--   calls (to_char, format, to_json), so PostgreSQL would not inline them:
--   every call ran as a separate SQL function, parsed again in each
--   statement that used it. Declared STABLE, they are inlined.
-- * PL/pgSQL caches a statement's plan. The plan made while messages was
--   empty looked refs up with a hash join over a sequential scan of
--   messages, and kept doing so once the table had grown: 50 ms a batch at
--   300,000 rows. The lookup is now a LATERAL probe with LIMIT, which
--   cannot become that join: an index probe per ref whatever the table's
--   size was when the plan was made.
-- * Rooms were locked one PL/pgSQL call each, then joined and updated by
--   name. They are now locked with one statement (in name order, so
--   concurrent batches cannot deadlock), their seqs kept in arrays, and
--   bumped by row address (the rows are locked: it cannot move).
-- * The foreign key from messages to rooms checked the room's row again
--   for every message, in a transaction that already holds that row
--   locked. It is dropped: every write goes through these functions,
--   which create and lock the room first, and rooms are never deleted.

CREATE OR REPLACE FUNCTION chat_ts(ts timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

CREATE OR REPLACE FUNCTION chat_user_json(p_id text, p_name text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT format('{"id":%s,"name":%s}', to_json(p_id), to_json(p_name))
$$;

ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_room_fkey;

-- Locks the rooms (creating those new) in name order; returns their
-- names, seqs and row addresses in that order.
CREATE OR REPLACE FUNCTION chat_lock_rooms(p_rooms text[], OUT names text[], OUT seqs bigint[],
                                           OUT tids tid[])
LANGUAGE plpgsql AS $$
BEGIN
    SELECT array_agg(l.name), array_agg(l.seq), array_agg(l.ctid)
      INTO names, seqs, tids
      FROM (SELECT r.name, r.seq, r.ctid FROM rooms r
             WHERE r.name = ANY (p_rooms) ORDER BY r.name FOR UPDATE) l;
    IF coalesce(cardinality(names), 0) < cardinality(p_rooms) THEN
        -- In name order too: two batches creating the same rooms queue
        -- behind each other instead of deadlocking.
        INSERT INTO rooms (name)
        SELECT n FROM unnest(p_rooms) n ORDER BY n ON CONFLICT DO NOTHING;
        SELECT array_agg(l.name), array_agg(l.seq), array_agg(l.ctid)
          INTO names, seqs, tids
          FROM (SELECT r.name, r.seq, r.ctid FROM rooms r
                 WHERE r.name = ANY (p_rooms) ORDER BY r.name FOR UPDATE) l;
    END IF;
END
$$;

-- p_batch: a JSON array of [room, user_id, user_name, text, ref or null].
-- Returns one row per element, in order (ord from 1). A ref this user
-- already used in this room, before or earlier in the batch, returns the
-- original (duplicate = true, payload null) and stores nothing.
CREATE OR REPLACE FUNCTION chat_post_batch(p_batch json)
RETURNS TABLE (ord bigint, id bigint, seq bigint, created_at text, payload text,
               duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_batch jsonb;
    v_rooms text[];
    v_lock record;
BEGIN
    -- One parse: ->> on a json value would lex the element again each time.
    v_batch := p_batch::jsonb;
    SELECT array_agg(DISTINCT m->>0) INTO v_rooms FROM jsonb_array_elements(v_batch) m;
    v_lock := chat_lock_rooms(v_rooms);
    RETURN QUERY
    WITH b AS MATERIALIZED (
        SELECT t.n, t.m->>0 AS room, t.m->>1 AS user_id, t.m->>2 AS user_name,
               t.m->>3 AS body, t.m->>4 AS ref
          FROM jsonb_array_elements(v_batch) WITH ORDINALITY AS t(m, n)
    ), locked AS MATERIALIZED (
        SELECT l.name, l.seq FROM unnest(v_lock.names, v_lock.seqs) AS l(name, seq)
    ), stored AS MATERIALIZED (
        SELECT b.n, m.id, m.created_seq, m.created_at
          FROM b CROSS JOIN LATERAL (
                   SELECT m.id, m.created_seq, m.created_at
                     FROM messages m
                    WHERE m.room = b.room AND m.user_id = b.user_id AND m.ref = b.ref
                    LIMIT 1) m
         WHERE b.ref IS NOT NULL
    ), fresh AS MATERIALIZED (
        SELECT u.*, row_number() OVER (PARTITION BY u.room ORDER BY u.n) AS k
          FROM (SELECT b.*, row_number() OVER (PARTITION BY b.room, b.user_id, b.ref
                                               ORDER BY b.n) AS use
                  FROM b
                 WHERE NOT EXISTS (SELECT 1 FROM stored s WHERE s.n = b.n)) u
         -- A ref's first use in the batch is stored; the later ones are
         -- its duplicates.
         WHERE u.ref IS NULL OR u.use = 1
    ), numbered AS MATERIALIZED (
        -- nextval over the rows in batch order: ids follow seq in a room.
        SELECT x.*, nextval('messages_id_seq') AS new_id, clock_timestamp() AS at
          FROM (SELECT f.*, l.seq + f.k AS new_seq
                  FROM fresh f JOIN locked l ON l.name = f.room
                 ORDER BY f.n) x
    ), events AS MATERIALIZED (
        SELECT nm.*, format('{"type":"message","id":%s,"seq":%s,"room":%s,"user":%s,"text":%s,"created_at":"%s"%s}',
                            nm.new_id, nm.new_seq, to_json(nm.room),
                            chat_user_json(nm.user_id, nm.user_name), to_json(nm.body),
                            chat_ts(nm.at),
                            CASE WHEN nm.ref IS NULL THEN '' ELSE ',"ref":' || to_json(nm.ref)::text END) AS ev
          FROM numbered nm
    ), ins AS (
        INSERT INTO messages (id, room, user_id, user_name, body, ref, created_at, seq, created_seq)
        SELECT e.new_id, e.room, e.user_id, e.user_name, e.body, e.ref, e.at, e.new_seq, e.new_seq
          FROM events e
    ), log AS (
        INSERT INTO room_events (room, seq, payload) SELECT e.room, e.new_seq, e.ev FROM events e
    ), bump AS (
        UPDATE rooms SET seq = mx.top
          FROM (SELECT e.room, max(e.new_seq) AS top FROM events e GROUP BY e.room) mx
         WHERE rooms.ctid = ANY (v_lock.tids) AND rooms.name = mx.room
    )
    SELECT b.n,
           coalesce(s.id, e.new_id, d.new_id),
           coalesce(s.created_seq, e.new_seq, d.new_seq),
           chat_ts(coalesce(s.created_at, e.at, d.at)),
           e.ev,
           e.n IS NULL
      FROM b
      LEFT JOIN stored s ON s.n = b.n
      LEFT JOIN events e ON e.n = b.n
      LEFT JOIN events d ON s.n IS NULL AND e.n IS NULL AND d.room = b.room
                        AND d.user_id = b.user_id AND d.ref = b.ref
     ORDER BY b.n;
END
$$;
