-- New messages, one call per batch of a worker (docs/architecture.md,
-- "The life of a message"). Message by message in the given order, but
-- set-based: each room's row is locked
-- once (in name order, so concurrent batches cannot deadlock) and its
-- counter written once, and the rows go in with one INSERT per table. Row
-- by row, PL/pgSQL spent about three times as long per message.
--
-- p_batch: a JSON array of [room, user_id, user_name, text, ref or null].
-- Returns one row per element, in order (ord from 1). A ref this user
-- already used in this room, before or earlier in the batch, returns the
-- original (duplicate = true, payload null) and stores nothing.
CREATE OR REPLACE FUNCTION chat_post_batch(p_batch json)
RETURNS TABLE (ord bigint, id bigint, seq bigint, created_at text, payload text,
               duplicate boolean)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM chat_lock_room(x.room)
       FROM (SELECT DISTINCT m->>0 AS room FROM json_array_elements(p_batch) m ORDER BY 1) x;
    RETURN QUERY
    WITH b AS MATERIALIZED (
        SELECT t.n, t.m->>0 AS room, t.m->>1 AS user_id, t.m->>2 AS user_name,
               t.m->>3 AS body, t.m->>4 AS ref
          FROM json_array_elements(p_batch) WITH ORDINALITY AS t(m, n)
    ), stored AS MATERIALIZED (
        SELECT b.n, m.id, m.created_seq, m.created_at
          FROM b JOIN messages m ON m.room = b.room AND m.user_id = b.user_id AND m.ref = b.ref
    ), fresh AS MATERIALIZED (
        SELECT b.*, row_number() OVER (PARTITION BY b.room ORDER BY b.n) AS k
          FROM b
         WHERE NOT EXISTS (SELECT 1 FROM stored s WHERE s.n = b.n)
           AND (b.ref IS NULL OR NOT EXISTS (
                   SELECT 1 FROM b b2
                    WHERE b2.room = b.room AND b2.user_id = b.user_id AND b2.ref = b.ref
                      AND b2.n < b.n))
    ), numbered AS MATERIALIZED (
        -- nextval over the rows in batch order: ids follow seq in a room.
        SELECT x.*, nextval('messages_id_seq') AS new_id, clock_timestamp() AS at
          FROM (SELECT f.*, r.seq + f.k AS new_seq
                  FROM fresh f JOIN rooms r ON r.name = f.room
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
         WHERE rooms.name = mx.room
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
