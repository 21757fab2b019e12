-- One message, one call: the store's path for a batch of up to eight
-- messages (a call each, in one transaction), which is every message of
-- a quiet room. chat_post_batch's fixed cost (starting the executor of
-- one statement of about 40 plan nodes, its CTEs, the JSON array) is
-- most of what such a batch costs.
-- Here every step is a small statement whose generic plan PL/pgSQL keeps,
-- and there is nothing to sort or join (docs/performance.md, "One message,
-- one call"). Same result row as chat_post_batch gives for a batch of one.
-- Several calls in one transaction must come in room order (the lock
-- order of chat_post_batch); a repeated ref finds the earlier call's row.
CREATE OR REPLACE FUNCTION chat_post_one(p_room text, p_user_id text, p_user_name text,
                                         p_body text, p_ref text)
RETURNS TABLE (ord bigint, id bigint, seq bigint, created_at text, payload text,
               duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_tid tid;
    v_id bigint;
    v_at timestamptz;
    v_stored_seq bigint;
BEGIN
    -- The room's row lock first: a resend of this ref committed by
    -- another worker meanwhile is visible to the lookup below.
    SELECT r.seq, r.ctid INTO v_seq, v_tid FROM rooms r WHERE r.name = p_room FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO rooms (name) VALUES (p_room) ON CONFLICT DO NOTHING;
        SELECT r.seq, r.ctid INTO v_seq, v_tid FROM rooms r WHERE r.name = p_room FOR UPDATE;
    END IF;
    ord := 1;
    IF p_ref IS NOT NULL THEN
        SELECT m.id, m.created_seq, m.created_at INTO v_id, v_stored_seq, v_at
          FROM messages m
         WHERE m.room = p_room AND m.user_id = p_user_id AND m.ref = p_ref;
        IF FOUND THEN
            id := v_id;
            seq := v_stored_seq;
            created_at := chat_ts(v_at);
            duplicate := true;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    v_seq := v_seq + 1;
    v_id := nextval('messages_id_seq');
    v_at := clock_timestamp();
    id := v_id;
    seq := v_seq;
    created_at := chat_ts(v_at);
    payload := format('{"type":"message","id":%s,"seq":%s,"room":%s,"user":%s,"text":%s,"created_at":"%s"%s}',
                      v_id, v_seq, to_json(p_room), chat_user_json(p_user_id, p_user_name),
                      to_json(p_body), created_at,
                      CASE WHEN p_ref IS NULL THEN '' ELSE ',"ref":' || to_json(p_ref)::text END);
    duplicate := false;
    INSERT INTO messages (id, room, user_id, user_name, body, ref, created_at, seq, created_seq)
    VALUES (v_id, p_room, p_user_id, p_user_name, p_body, p_ref, v_at, v_seq, v_seq);
    INSERT INTO room_events (room, seq, payload) VALUES (p_room, v_seq, payload);
    -- By row address: the row is locked, so it cannot have moved.
    UPDATE rooms SET seq = v_seq WHERE ctid = v_tid;
    RETURN NEXT;
END
$$;
