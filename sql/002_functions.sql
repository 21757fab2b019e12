-- The write path and the read paths, each one round trip.

-- RFC 3339, UTC, milliseconds, "Z": the one timestamp format on the wire.
CREATE OR REPLACE FUNCTION chat_ts(ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- Locks the room's row (creating it on first use) and returns its seq.
-- Holding this lock until commit is what makes seq and ids follow commit
-- order within a room.
CREATE OR REPLACE FUNCTION chat_lock_room(p_room text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
BEGIN
    SELECT r.seq INTO v_seq FROM rooms r WHERE r.name = p_room FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO rooms (name) VALUES (p_room) ON CONFLICT DO NOTHING;
        SELECT r.seq INTO v_seq FROM rooms r WHERE r.name = p_room FOR UPDATE;
    END IF;
    RETURN v_seq;
END
$$;

CREATE OR REPLACE FUNCTION chat_user_json(p_id text, p_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT format('{"id":%s,"name":%s}', to_json(p_id), to_json(p_name))
$$;

-- An edit by the author within the window, judged by the database clock.
-- status: ok, not_found, forbidden, edit_window_closed.
CREATE OR REPLACE FUNCTION chat_edit(p_room text, p_id bigint, p_user_id text, p_body text,
                                     p_window_s integer, p_ref text)
RETURNS TABLE (status text, seq bigint, edited_at text, payload text)
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_at timestamptz;
    v_payload text;
    m messages%ROWTYPE;
BEGIN
    v_seq := chat_lock_room(p_room);
    SELECT * INTO m FROM messages WHERE messages.id = p_id AND messages.room = p_room;
    IF NOT FOUND OR m.deleted_at IS NOT NULL THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::bigint, NULL::text, NULL::text;
        RETURN;
    END IF;
    IF m.user_id <> p_user_id THEN
        RETURN QUERY SELECT 'forbidden'::text, NULL::bigint, NULL::text, NULL::text;
        RETURN;
    END IF;
    v_at := clock_timestamp();
    IF v_at > m.created_at + make_interval(secs => p_window_s) THEN
        RETURN QUERY SELECT 'edit_window_closed'::text, NULL::bigint, NULL::text, NULL::text;
        RETURN;
    END IF;
    v_seq := v_seq + 1;
    UPDATE rooms SET seq = v_seq WHERE name = p_room;
    UPDATE messages SET body = p_body, edited_at = v_at, seq = v_seq WHERE messages.id = p_id;
    v_payload := format('{"type":"edit","id":%s,"seq":%s,"room":%s,"user":%s,"text":%s,"edited_at":"%s"%s}',
                        p_id, v_seq, to_json(p_room), chat_user_json(m.user_id, m.user_name),
                        to_json(p_body), chat_ts(v_at),
                        CASE WHEN p_ref IS NULL THEN '' ELSE ',"ref":' || to_json(p_ref)::text END);
    INSERT INTO room_events (room, seq, payload) VALUES (p_room, v_seq, v_payload);
    RETURN QUERY SELECT 'ok'::text, v_seq, chat_ts(v_at), v_payload;
END
$$;

-- A soft delete: by the author, or by anyone when p_any (organizers).
-- status: ok, not_found, forbidden.
CREATE OR REPLACE FUNCTION chat_delete(p_room text, p_id bigint, p_user_id text, p_any boolean,
                                       p_ref text)
RETURNS TABLE (status text, seq bigint, deleted_at text, payload text)
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_at timestamptz;
    v_payload text;
    m messages%ROWTYPE;
BEGIN
    v_seq := chat_lock_room(p_room);
    SELECT * INTO m FROM messages WHERE messages.id = p_id AND messages.room = p_room;
    IF NOT FOUND OR m.deleted_at IS NOT NULL THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::bigint, NULL::text, NULL::text;
        RETURN;
    END IF;
    IF NOT p_any AND m.user_id <> p_user_id THEN
        RETURN QUERY SELECT 'forbidden'::text, NULL::bigint, NULL::text, NULL::text;
        RETURN;
    END IF;
    v_seq := v_seq + 1;
    v_at := clock_timestamp();
    UPDATE rooms SET seq = v_seq WHERE name = p_room;
    UPDATE messages SET deleted_at = v_at, seq = v_seq WHERE messages.id = p_id;
    v_payload := format('{"type":"delete","id":%s,"seq":%s,"room":%s,"deleted_at":"%s"%s}',
                        p_id, v_seq, to_json(p_room), chat_ts(v_at),
                        CASE WHEN p_ref IS NULL THEN '' ELSE ',"ref":' || to_json(p_ref)::text END);
    INSERT INTO room_events (room, seq, payload) VALUES (p_room, v_seq, v_payload);
    RETURN QUERY SELECT 'ok'::text, v_seq, chat_ts(v_at), v_payload;
END
$$;

-- A message as the history endpoint and replays show it. Deleted ones
-- carry deleted_at (only organizers are shown those).
CREATE OR REPLACE FUNCTION chat_message_json(m messages, p_type text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('{%s"id":%s,"seq":%s,"room":%s,"user":%s,"text":%s,"created_at":"%s"%s%s%s}',
                  CASE WHEN p_type IS NULL THEN '' ELSE '"type":' || to_json(p_type)::text || ',' END,
                  m.id, m.seq, to_json(m.room), chat_user_json(m.user_id, m.user_name),
                  to_json(m.body), chat_ts(m.created_at),
                  CASE WHEN m.edited_at IS NULL THEN '' ELSE ',"edited_at":"' || chat_ts(m.edited_at) || '"' END,
                  CASE WHEN m.deleted_at IS NULL THEN '' ELSE ',"deleted_at":"' || chat_ts(m.deleted_at) || '"' END,
                  CASE WHEN m.ref IS NULL THEN '' ELSE ',"ref":' || to_json(m.ref)::text END)
$$;

-- History page: the whole response body in one row. STABLE, so all its
-- queries read one snapshot.
CREATE OR REPLACE FUNCTION chat_history(p_room text, p_limit integer, p_before bigint,
                                        p_after bigint, p_with_deleted boolean)
RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_items text;
    v_count integer;
BEGIN
    IF p_after IS NOT NULL THEN
        SELECT string_agg(j, ',' ORDER BY id), count(*) INTO v_items, v_count FROM (
            SELECT m.id, chat_message_json(m, NULL) AS j FROM messages m
             WHERE m.room = p_room AND m.id > p_after
               AND (p_with_deleted OR m.deleted_at IS NULL)
             ORDER BY m.id ASC LIMIT p_limit + 1) page;
        IF v_count > p_limit THEN
            -- One row too many tells has_more; drop the newest.
            SELECT string_agg(j, ',' ORDER BY id) INTO v_items FROM (
                SELECT m.id, chat_message_json(m, NULL) AS j FROM messages m
                 WHERE m.room = p_room AND m.id > p_after
                   AND (p_with_deleted OR m.deleted_at IS NULL)
                 ORDER BY m.id ASC LIMIT p_limit) page;
        END IF;
    ELSE
        SELECT string_agg(j, ',' ORDER BY id), count(*) INTO v_items, v_count FROM (
            SELECT m.id, chat_message_json(m, NULL) AS j FROM messages m
             WHERE m.room = p_room AND (p_before IS NULL OR m.id < p_before)
               AND (p_with_deleted OR m.deleted_at IS NULL)
             ORDER BY m.id DESC LIMIT p_limit + 1) page;
        IF v_count > p_limit THEN
            SELECT string_agg(j, ',' ORDER BY id) INTO v_items FROM (
                SELECT m.id, chat_message_json(m, NULL) AS j FROM messages m
                 WHERE m.room = p_room AND (p_before IS NULL OR m.id < p_before)
                   AND (p_with_deleted OR m.deleted_at IS NULL)
                 ORDER BY m.id DESC LIMIT p_limit) page;
        END IF;
    END IF;
    RETURN format('{"room":%s,"messages":[%s],"has_more":%s}', to_json(p_room),
                  coalesce(v_items, ''), CASE WHEN v_count > p_limit THEN 'true' ELSE 'false' END);
END
$$;

-- Catching up after since: the room's latest seq, then one event per
-- message changed after p_since, in seq order (at most p_max + 1 rows, so
-- the caller can tell "too many"). STABLE: one snapshot, so last_seq and
-- the events agree.
CREATE OR REPLACE FUNCTION chat_replay(p_room text, p_since bigint, p_max integer)
RETURNS TABLE (last_seq bigint, seq bigint, payload text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_last bigint;
BEGIN
    v_last := coalesce((SELECT r.seq FROM rooms r WHERE r.name = p_room), 0);
    RETURN QUERY SELECT v_last, NULL::bigint, NULL::text;
    IF p_since >= v_last THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT v_last, m.seq,
               CASE WHEN m.deleted_at IS NOT NULL THEN
                        format('{"type":"delete","id":%s,"seq":%s,"room":%s,"deleted_at":"%s"}',
                               m.id, m.seq, to_json(m.room), chat_ts(m.deleted_at))
                    WHEN m.created_seq > p_since THEN chat_message_json(m, 'message')
                    ELSE format('{"type":"edit","id":%s,"seq":%s,"room":%s,"user":%s,"text":%s,"edited_at":"%s"}',
                                m.id, m.seq, to_json(m.room), chat_user_json(m.user_id, m.user_name),
                                to_json(m.body), chat_ts(m.edited_at))
               END
          FROM messages m
         WHERE m.room = p_room AND m.seq > p_since
         ORDER BY m.seq
         LIMIT p_max + 1;
END
$$;
