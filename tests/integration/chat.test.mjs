// The chat core (PROTOCOL.md sections 1, 3 and 4): roles, ordered fan-out
// across two workers through Redis, durable messages with edit and
// delete, validation, idempotent refs, the per-user rate limit, and the
// history and online-users endpoints.
//
// Every test starts its own chatd with two workers, uses rooms with a
// random suffix, and spreads its clients over both workers where that
// matters (the first three groups of a conn_id name the worker process).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
    auth, httpGet, metricCounter, NO_RATE, openWs, psql, redisCli, rnd, roomName, startChatd, waitFor, workerOf,
} from '../lib/harness.mjs';

const TS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const REPLY_MS = 15000;


/** The ack or error that answers the request with this ref. */
const reply = (c, ref, ms = REPLY_MS) =>
    c.next((ev) => (ev.type === 'ack' || ev.type === 'error') && ev.ref === ref, ms);

/** Sends a message and resolves with its ack (fails on an error). */
async function post(c, text, ref = `m-${rnd()}`) {
    await c.send({ type: 'message', text, ref });
    const r = await reply(c, ref);
    assert.equal(r.type, 'ack', `message ${ref}: ${JSON.stringify(r)}`);
    return r;
}

/** Sends a request expected to fail and checks the error carries code and ref. */
async function refused(c, req, code) {
    const ref = req.ref ?? `e-${rnd()}`;
    await c.send({ ...req, ref });
    const r = await reply(c, ref);
    assert.equal(r.type, 'error', `${JSON.stringify(req)} got ${JSON.stringify(r)}`);
    assert.equal(r.code, code, `${JSON.stringify(req)} got ${JSON.stringify(r)}`);
    assert.equal(typeof r.message, 'string');
    return r;
}

/** The next n events matching pred, in arrival order. */
async function take(c, pred, n, ms = REPLY_MS) {
    const out = [];
    while (out.length < n) out.push(await c.next(pred, ms));
    return out;
}

/**
 * Opens one connection per token (cycling through tokens) into room until
 * at least `min` are open and both workers hold some (bounded). Returns
 * the clients; every one is closed after the test.
 */
async function openSpread(t, srv, room, tokens, min, max = 48) {
    const clients = [];
    t.after(() => Promise.all(clients.map((c) => c.close())));
    for (let i = 0; clients.length < max; i++) {
        const c = await openWs(srv.wsUrl(`/api/chat?room=${room}`), { token: tokens[i % tokens.length] });
        clients.push(c);
        if (clients.length >= min && new Set(clients.map(workerOf)).size >= 2) return clients;
    }
    assert.fail(`${max} connections all landed on one worker`);
}

/** Opens a client and closes it after the test. */
async function client(t, srv, room, token, opts = {}) {
    const c = await openWs(srv.wsUrl(`/api/chat?room=${room}`), { token, ...opts });
    t.after(() => c.close());
    return c;
}

/**
 * Two connections of one token on different workers (bounded tries; the
 * kernel spreads connections over the workers' sockets).
 */
async function twoWorkers(t, srv, room, token) {
    const first = await client(t, srv, room, token);
    for (let i = 0; i < 40; i++) {
        const c = await client(t, srv, room, token);
        if (workerOf(c) !== workerOf(first)) return [first, c];
    }
    assert.fail('40 connections all landed on one worker');
}

async function history(srv, token, query) {
    return httpGet(srv.port, `/api/chat/messages?${query}`, { headers: auth(token) });
}

// ------------------------------------------------------------------ fan-out

test('fan-out: concurrent senders on both workers; every client sees one gapless order', async (t) => {
    const srv = await startChatd({ t, workers: 2, env: NO_RATE });
    const room = roomName('fan');
    const USERS = 10;
    const EACH = 20;
    const tokens = Array.from({ length: USERS }, (_, i) => srv.token({ sub: `u${i}`, name: `User ${i}` }));
    const clients = await openSpread(t, srv, room, tokens, USERS);
    const n = clients.length * EACH;
    assert.equal(new Set(clients.map(workerOf)).size, 2, 'clients on both workers');

    // Everybody sends at once, without waiting for acks.
    const sent = clients.map((c, ci) => Array.from({ length: EACH }, (_, k) => `c${ci}-k${k}`));
    await Promise.all(clients.map(async (c, ci) => {
        for (const ref of sent[ci]) await c.send({ type: 'message', text: `hello ${ref}`, ref });
    }));

    const seen = await Promise.all(clients.map((c) => take(c, 'message', n, 30000)));
    const acks = await Promise.all(clients.map((c) => take(c, (ev) => ev.type === 'ack' || ev.type === 'error', EACH, 30000)));

    const order = seen[0].map((m) => m.id);
    for (const [ci, c] of clients.entries()) {
        const msgs = seen[ci];
        const base = c.welcome.last_seq;
        msgs.forEach((m, k) => {
            assert.equal(m.seq, base + k + 1, `client ${ci}: event ${k} has seq ${m.seq}, wanted ${base + k + 1}`);
            assert.equal(m.room, room);
        });
        assert.deepEqual(msgs.map((m) => m.id), order, `client ${ci} saw another order than client 0`);
        for (let k = 1; k < msgs.length; k++) assert.ok(msgs[k].id > msgs[k - 1].id, 'ids increase with seq');

        // Exactly one ack per send, matching the broadcast.
        assert.deepEqual(acks[ci].map((a) => a.type), Array(EACH).fill('ack'), `client ${ci}: ${JSON.stringify(acks[ci].find((a) => a.type !== 'ack'))}`);
        assert.deepEqual(acks[ci].map((a) => a.ref).sort(), [...sent[ci]].sort());
        const byRef = new Map(msgs.map((m) => [m.ref, m]));
        for (const a of acks[ci]) {
            const m = byRef.get(a.ref);
            assert.ok(m, `ack ${a.ref} was never broadcast`);
            assert.equal(a.op, 'message');
            assert.equal(a.id, m.id);
            assert.equal(a.seq, m.seq);
            assert.equal(a.created_at, m.created_at);
            assert.match(a.created_at, TS);
            assert.equal(m.user.id, `u${ci % USERS}`);
            assert.equal(m.text, `hello ${a.ref}`);
        }
    }
    // Every message of every sender, once.
    assert.equal(new Set(seen[0].map((m) => m.ref)).size, n);
    // Nothing more: no duplicate broadcast, no second ack.
    await Promise.all(clients.map((c) => c.expectNone((ev) => ['message', 'ack', 'error'].includes(ev.type), 300)));
    assert.equal(await psql(`SELECT count(*) FROM messages WHERE room = '${room}'`), String(n));
});

test('order: messages sent back to back on one connection are stored in the order sent', async (t) => {
    // Several pool connections per worker, and bursts large enough for
    // the store to spread batches over them (docs/performance.md, "Store
    // batches"): unless a room's next batch waits for the one in flight,
    // the batches of one burst could commit in any order.
    const srv = await startChatd({ t, workers: 2, env: { ...NO_RATE, CHAT_PG_POOL_SIZE: 4 } });
    const room = roomName('order');
    const tok = srv.token({ sub: `u-${rnd()}`, role: 'member' });
    const c = await client(t, srv, room, tok);
    const watcher = await client(t, srv, room, srv.token({ sub: `w-${rnd()}`, role: 'viewer' }));
    for (let round = 0; round < 3; round++) {
        const refs = Array.from({ length: 100 }, (_, i) => `o${round}-${i}`);
        for (const ref of refs) await c.send({ type: 'message', text: ref, ref });
        const acks = [];
        for (const ref of refs) acks.push(await reply(c, ref));
        for (const a of acks) assert.equal(a.type, 'ack', JSON.stringify(a));
        const seqs = acks.map((a) => a.seq);
        assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), `round ${round}: seq follows send order`);
        const ids = acks.map((a) => a.id);
        assert.deepEqual(ids, [...ids].sort((x, y) => x - y), `round ${round}: ids follow send order`);
        const seen = await take(watcher, 'message', refs.length);
        assert.deepEqual(seen.map((m) => m.text), refs, `round ${round}: others see the send order`);
    }
});

test('many rooms at once: every message of every room is acked and broadcast', async (t) => {
    // Rooms share the pool's connections (shards); while one shard's batch
    // commits, messages for the others must still leave.
    const srv = await startChatd({ t, workers: 1, env: { ...NO_RATE, CHAT_PG_POOL_SIZE: 2 } });
    const clients = [];
    for (let i = 0; i < 24; i++) {
        clients.push(await client(t, srv, roomName(`multi${i}`), srv.token({ sub: `u${i}-${rnd()}`, role: 'member' })));
    }
    for (let round = 0; round < 4; round++) {
        for (const [i, c] of clients.entries()) {
            for (let k = 0; k < 3; k++) await c.send({ type: 'message', text: `r${round} c${i} m${k}`, ref: `r${round}-${k}` });
        }
        for (const c of clients) {
            for (let k = 0; k < 3; k++) assert.equal((await reply(c, `r${round}-${k}`)).type, 'ack');
            assert.equal((await take(c, 'message', 3)).length, 3);
        }
    }
});

test('fan-out: a message reaches its room on both workers, the sender included, and no other room', async (t) => {
    const srv = await startChatd({ t, workers: 2, env: NO_RATE });
    const room = roomName('iso');
    const other = roomName('iso2');
    const alice = srv.token({ sub: 'alice', name: 'Alice' });
    const bob = srv.token({ sub: 'bob', name: 'Bob' });
    const carol = srv.token({ sub: 'carol', name: 'Carol' });
    const [a1, a2] = await twoWorkers(t, srv, room, alice);
    const inRoom = await openSpread(t, srv, room, [bob], 4);
    const outside = await openSpread(t, srv, other, [carol, alice], 4);

    const ack = await post(a1, 'for room one only');
    for (const c of [a1, a2, ...inRoom]) {
        const m = await c.next('message');
        assert.equal(m.id, ack.id);
        assert.equal(m.room, room);
        assert.deepEqual(m.user, { id: 'alice', name: 'Alice' });
        assert.equal(m.text, 'for room one only');
    }
    // The other room's own traffic arrives, and before it nothing of room one.
    const ack2 = await post(outside[0], 'for room two');
    for (const c of outside) {
        const m = await c.next('message');
        assert.equal(m.id, ack2.id, `other room got ${JSON.stringify(m)}`);
        assert.equal(m.room, other);
        assert.ok(!c.received.some((ev) => ev.room === room), 'no event of room one leaked');
    }
});

// ------------------------------------------------------------------- roles

test('roles: viewer reads but cannot write; typing from a viewer is dropped', async (t) => {
    const srv = await startChatd({ t, workers: 2, env: NO_RATE });
    const room = roomName('view');
    const viewerTok = srv.token({ sub: 'vic', name: 'Vic', role: 'viewer' });
    const memberTok = srv.token({ sub: 'mia', name: 'Mia', role: 'member' });
    const v = await client(t, srv, room, viewerTok);
    assert.deepEqual(v.welcome.user, { id: 'vic', name: 'Vic', role: 'viewer' });
    const [m1, m2] = await twoWorkers(t, srv, room, memberTok);

    const ack = await post(m1, 'readable by all');
    assert.equal((await v.next('message')).id, ack.id, 'viewer receives messages');

    await refused(v, { type: 'message', text: 'nope' }, 'forbidden');
    await refused(v, { type: 'edit', id: ack.id, text: 'nope' }, 'forbidden');
    await refused(v, { type: 'delete', id: ack.id }, 'forbidden');

    // Typing from the viewer: no reply, and nobody receives it. The
    // member's later message is published after anything the viewer's
    // typing could have published, so it is the fence.
    await v.send({ type: 'typing' });
    await refused(v, { type: 'message', text: 'fence' }, 'forbidden');
    const fence = await post(m2, 'after the viewer typed');
    for (const c of [m1, m2]) {
        await c.next((ev) => ev.type === 'message' && ev.id === fence.id);
        assert.ok(!c.received.some((ev) => ev.type === 'typing'), `typing leaked: ${JSON.stringify(c.received)}`);
    }
    await m1.expectNone('typing', 300);
    assert.ok(!v.queue.some((ev) => ev.type === 'error' || ev.type === 'ack'), 'typing got no reply');

    // Nothing the viewer tried was stored.
    assert.equal(await psql(`SELECT count(*) FROM messages WHERE room = '${room}'`), '2');
    assert.equal(await psql(`SELECT count(*) FROM messages WHERE room = '${room}' AND (edited_at IS NOT NULL OR deleted_at IS NOT NULL)`), '0');

    // Reading over REST.
    const h = await history(srv, viewerTok, `room=${room}`);
    assert.equal(h.status, 200, h.body);
    assert.deepEqual(h.json.messages.map((m) => m.id), [ack.id, fence.id]);
    const u = await httpGet(srv.port, `/api/users?room=${room}`, { headers: auth(viewerTok) });
    assert.equal(u.status, 200, u.body);
    assert.deepEqual(u.json.users.map((x) => x.id).sort(), ['mia', 'vic']);
});

test('roles: member and organizer send, type, edit and delete their own; only organizers delete any', async (t) => {
    const srv = await startChatd({ t, workers: 2, env: NO_RATE });
    const room = roomName('roles');
    const mia = srv.token({ sub: 'mia', name: 'Mia' }); // member by default
    const max = srv.token({ sub: 'max', name: 'Max', role: 'member' });
    const ola = srv.token({ sub: 'ola', name: 'Ola', role: 'organizer' });
    const vic = srv.token({ sub: 'vic', name: 'Vic', role: 'viewer' });
    const cMia = await client(t, srv, room, mia);
    assert.equal(cMia.welcome.user.role, 'member');
    const cMax = await client(t, srv, room, max);
    const cOla = await client(t, srv, room, ola);
    assert.equal(cOla.welcome.user.role, 'organizer');
    const all = [cMia, cMax, cOla];

    // Typing from members and organizers reaches the others, not the sender.
    await cMia.send({ type: 'typing' });
    for (const c of [cMax, cOla]) {
        const ty = await c.next('typing');
        assert.deepEqual(ty, { type: 'typing', room, user: { id: 'mia', name: 'Mia' } });
    }
    await cOla.send({ type: 'typing' });
    for (const c of [cMia, cMax]) assert.deepEqual((await c.next('typing')).user, { id: 'ola', name: 'Ola' });
    // Mia's typing went out before Ola's: had it come back to Mia, it
    // would be here by now.
    assert.ok(!cMia.received.some((ev) => ev.type === 'typing' && ev.user.id === 'mia'), 'typing is not echoed');
    assert.ok(!cOla.received.some((ev) => ev.type === 'typing' && ev.user.id === 'ola'), 'typing is not echoed');

    const a = await post(cMia, 'mia one');
    const b = await post(cMax, 'max one');
    const o = await post(cOla, 'ola one');
    for (const c of all) await take(c, 'message', 3);

    // Editing: own only, for members and organizers alike.
    await refused(cMax, { type: 'edit', id: a.id, text: 'hijack' }, 'forbidden');
    await refused(cOla, { type: 'edit', id: a.id, text: 'hijack' }, 'forbidden');
    await cMia.send({ type: 'edit', id: a.id, text: 'mia one, edited', ref: 'ed-1' });
    const ea = await reply(cMia, 'ed-1');
    assert.equal(ea.type, 'ack', JSON.stringify(ea));
    assert.equal(ea.op, 'edit');
    assert.equal(ea.id, a.id);
    assert.equal(ea.seq, o.seq + 1, 'an edit takes the next seq');
    assert.match(ea.edited_at, TS);
    for (const c of all) {
        const ev = await c.next('edit');
        assert.equal(ev.id, a.id);
        assert.equal(ev.seq, ea.seq);
        assert.equal(ev.room, room);
        assert.equal(ev.text, 'mia one, edited');
        assert.equal(ev.edited_at, ea.edited_at);
        assert.deepEqual(ev.user, { id: 'mia', name: 'Mia' });
    }
    await cOla.send({ type: 'edit', id: o.id, text: 'ola one, edited', ref: 'ed-2' });
    assert.equal((await reply(cOla, 'ed-2')).type, 'ack');
    for (const c of all) await c.next('edit');

    // Deleting: a member not another's message, their own yes; an organizer any.
    await refused(cMax, { type: 'delete', id: a.id }, 'forbidden');
    await cMax.send({ type: 'delete', id: b.id, ref: 'del-own' });
    const db = await reply(cMax, 'del-own');
    assert.equal(db.type, 'ack', JSON.stringify(db));
    assert.equal(db.op, 'delete');
    assert.equal(db.id, b.id);
    assert.match(db.deleted_at, TS);
    await cOla.send({ type: 'delete', id: a.id, ref: 'del-any' });
    const da = await reply(cOla, 'del-any');
    assert.equal(da.type, 'ack', JSON.stringify(da));
    assert.equal(da.seq, db.seq + 1);
    for (const c of all) {
        const [d1, d2] = await take(c, 'delete', 2);
        assert.deepEqual([d1.id, d1.seq, d1.deleted_at], [b.id, db.seq, db.deleted_at]);
        assert.deepEqual([d2.id, d2.seq, d2.deleted_at], [a.id, da.seq, da.deleted_at]);
        assert.equal(d1.room, room);
        assert.ok(!('text' in d1), 'a delete event does not carry the text');
    }

    // History: organizers see the deleted ones with deleted_at and their
    // text; members and viewers do not see them at all.
    const forOla = await history(srv, ola, `room=${room}`);
    assert.equal(forOla.status, 200, forOla.body);
    assert.deepEqual(forOla.json.messages.map((m) => m.id), [a.id, b.id, o.id]);
    const [ha, hb, ho] = forOla.json.messages;
    assert.equal(ha.text, 'mia one, edited');
    assert.equal(ha.deleted_at, da.deleted_at);
    assert.equal(ha.edited_at, ea.edited_at);
    assert.equal(ha.seq, da.seq, 'the latest seq');
    assert.equal(hb.text, 'max one');
    assert.equal(hb.deleted_at, db.deleted_at);
    assert.ok(!('deleted_at' in ho));
    for (const tok of [mia, max, vic]) {
        const h = await history(srv, tok, `room=${room}`);
        assert.equal(h.status, 200, h.body);
        assert.deepEqual(h.json.messages.map((m) => m.id), [o.id]);
        assert.ok(!('deleted_at' in h.json.messages[0]));
        assert.equal(h.json.messages[0].text, 'ola one, edited');
    }
});

// ------------------------------------------------------- edit and delete

test('edit and delete: not_found cases, deleted messages, other rooms', async (t) => {
    const srv = await startChatd({ t, workers: 2, env: NO_RATE });
    const room = roomName('ed');
    const other = roomName('ed2');
    const mia = srv.token({ sub: 'mia', name: 'Mia' });
    const ola = srv.token({ sub: 'ola', name: 'Ola', role: 'organizer' });
    const cMia = await client(t, srv, room, mia);
    const cOla = await client(t, srv, room, ola);
    const oMia = await client(t, srv, other, mia);
    const oOla = await client(t, srv, other, ola);

    const here = await post(cMia, 'in room one');
    const there = await post(oMia, 'in room two');

    // An id of another room is not found in this one, for the author and
    // for an organizer; the message is untouched.
    await refused(cMia, { type: 'edit', id: there.id, text: 'x' }, 'not_found');
    await refused(cMia, { type: 'delete', id: there.id }, 'not_found');
    await refused(cOla, { type: 'delete', id: there.id }, 'not_found');
    await refused(oMia, { type: 'edit', id: here.id, text: 'x' }, 'not_found');
    await refused(oOla, { type: 'delete', id: here.id }, 'not_found');
    assert.equal(await psql(`SELECT count(*) FROM messages WHERE id IN (${here.id}, ${there.id}) AND edited_at IS NULL AND deleted_at IS NULL`), '2');

    // An id that does not exist at all.
    const huge = 9007199254740991; // largest exact integer in JSON numbers here
    await refused(cMia, { type: 'edit', id: huge, text: 'x' }, 'not_found');
    await refused(cMia, { type: 'delete', id: huge }, 'not_found');

    // Deleted by its author, then again: not_found; an edit of it too.
    const d1 = await post(cMia, 'short-lived');
    await cMia.send({ type: 'delete', id: d1.id, ref: 'd1' });
    assert.equal((await reply(cMia, 'd1')).type, 'ack');
    await refused(cMia, { type: 'delete', id: d1.id }, 'not_found');
    await refused(cOla, { type: 'delete', id: d1.id }, 'not_found');
    await refused(cMia, { type: 'edit', id: d1.id, text: 'revive' }, 'not_found');

    // Deleted by an organizer, then again.
    const d2 = await post(cMia, 'moderated');
    await cOla.send({ type: 'delete', id: d2.id, ref: 'd2' });
    assert.equal((await reply(cOla, 'd2')).type, 'ack');
    await refused(cOla, { type: 'delete', id: d2.id }, 'not_found');
    await refused(cMia, { type: 'delete', id: d2.id }, 'not_found');

    // Refusals took no seq: the room's changes are exactly the 3 messages
    // and 2 deletes, numbered without gaps.
    assert.equal(await psql(`SELECT seq FROM rooms WHERE name = '${room}'`), '5');
    assert.equal(await psql(`SELECT string_agg(seq::text, ',' ORDER BY seq) FROM room_events WHERE room = '${room}'`), '1,2,3,4,5');
    // Edits within the window work; they are covered in the roles test. An
    // edit keeps the message's id and creation time.
    await cMia.send({ type: 'edit', id: here.id, text: 'in room one, again', ref: 'e1' });
    const e1 = await reply(cMia, 'e1');
    assert.equal(e1.type, 'ack', JSON.stringify(e1));
    assert.equal(e1.seq, 6);
    assert.equal(await psql(`SELECT body || '|' || (created_seq = 1)::text FROM messages WHERE id = ${here.id}`), 'in room one, again|true');
});

test('edit: after the edit window the edit is refused with edit_window_closed', async (t) => {
    const srv = await startChatd({ t, workers: 2, env: { CHAT_EDIT_WINDOW_S: 1 } });
    const room = roomName('win');
    const mia = srv.token({ sub: 'mia', name: 'Mia' });
    const c = await client(t, srv, room, mia);
    const watcher = await client(t, srv, room, srv.token({ sub: 'wes' }));
    const m = await post(c, 'soon frozen');
    await watcher.next('message');

    // Edits may succeed while the window is open; once it has passed they
    // fail, and from then on every time (bounded; default rate 5/s).
    let n = 0;
    const closed = await waitFor(async () => {
        const ref = `try-${n++}`;
        await c.send({ type: 'edit', id: m.id, text: `attempt ${ref}`, ref });
        const r = await reply(c, ref);
        if (r.type === 'ack') return false;
        assert.equal(r.code, 'edit_window_closed', JSON.stringify(r));
        return r;
    }, 15000, 300, 'edit_window_closed');
    assert.equal(closed.type, 'error');
    await refused(c, { type: 'edit', id: m.id, text: 'still closed' }, 'edit_window_closed');
    // The window closed on the edit, not on the message's life: it can
    // still be deleted.
    await c.send({ type: 'delete', id: m.id, ref: 'del' });
    assert.equal((await reply(c, 'del')).type, 'ack');
    const body = await psql(`SELECT body FROM messages WHERE id = ${m.id}`);
    assert.ok(body === 'soon frozen' || body.startsWith('attempt try-'), body);
    // Watchers saw one edit per acked attempt and none for refused ones.
    await watcher.next('delete');
    const edits = watcher.received.filter((ev) => ev.type === 'edit');
    assert.equal(edits.length, n - 1, 'the refused attempt was not broadcast');
});

// -------------------------------------------------------------- validation

test('validation: malformed requests get bad_request, unknown_type, empty, too_long; the connection stays open', async (t) => {
    const srv = await startChatd({ t, workers: 2, env: NO_RATE });
    const room = roomName('val');
    const mia = srv.token({ sub: 'mia', name: 'Mia' });
    const c = await client(t, srv, room, mia);
    const watcher = await client(t, srv, room, srv.token({ sub: 'wes' }));
    const mine = await post(c, 'an edit target');
    let acked = 1;

    const stillOpen = async () => {
        await post(c, `still here ${acked}`);
        acked++;
    };

    // Frames without a usable ref: the error has none.
    for (const raw of ['not json', '{"type":"message",', '[1,2]', '[]', '"message"', '42', 'null', 'true', '']) {
        await c.sendRaw(raw);
        const e = await c.next('error');
        assert.equal(e.code, 'bad_request', `${JSON.stringify(raw)}: ${JSON.stringify(e)}`);
        assert.ok(!('ref' in e), `${JSON.stringify(raw)}: ${JSON.stringify(e)}`);
        await stillOpen();
    }

    const cases = [
        // [request, code]
        [{ text: 'no type' }, 'bad_request'],
        [{ type: 5, text: 'x' }, 'bad_request'],
        [{ type: null, text: 'x' }, 'bad_request'],
        [{ type: ['message'], text: 'x' }, 'bad_request'],
        [{ type: 'shout', text: 'x' }, 'unknown_type'],
        [{ type: 'Message', text: 'x' }, 'unknown_type'],
        [{ type: '', text: 'x' }, 'unknown_type'],
        [{ type: 'message' }, 'bad_request'],
        [{ type: 'message', text: 5 }, 'bad_request'],
        [{ type: 'message', text: null }, 'bad_request'],
        [{ type: 'message', text: ['hi'] }, 'bad_request'],
        [{ type: 'message', text: { t: 'hi' } }, 'bad_request'],
        [{ type: 'edit', text: 'x' }, 'bad_request'],
        [{ type: 'edit', id: String(mine.id), text: 'x' }, 'bad_request'],
        [{ type: 'edit', id: 0, text: 'x' }, 'bad_request'],
        [{ type: 'edit', id: -1, text: 'x' }, 'bad_request'],
        [{ type: 'edit', id: 1.5, text: 'x' }, 'bad_request'],
        [{ type: 'edit', id: null, text: 'x' }, 'bad_request'],
        [{ type: 'edit', id: mine.id }, 'bad_request'],
        [{ type: 'edit', id: mine.id, text: 7 }, 'bad_request'],
        [{ type: 'delete' }, 'bad_request'],
        [{ type: 'delete', id: 'x' }, 'bad_request'],
        [{ type: 'delete', id: 0 }, 'bad_request'],
        [{ type: 'delete', id: -5 }, 'bad_request'],
        [{ type: 'delete', id: 2.25 }, 'bad_request'],
        [{ type: 'delete', id: true }, 'bad_request'],
        [{ type: 'message', text: '' }, 'empty'],
        [{ type: 'message', text: ' ' }, 'empty'],
        [{ type: 'message', text: ' \t\r\n ' }, 'empty'],
        [{ type: 'message', text: '\u3000' }, 'empty'],
        [{ type: 'message', text: '\u3000 \u00a0\u2003\u200b\ufeff\u2028' }, 'empty'],
        [{ type: 'edit', id: mine.id, text: '' }, 'empty'],
        [{ type: 'edit', id: mine.id, text: '\u3000\u3000' }, 'empty'],
    ];
    for (const [req, code] of cases) {
        const ref = `v-${rnd()}`;
        await c.send({ ...req, ref });
        const e = await c.next('error');
        assert.equal(e.code, code, `${JSON.stringify(req)}: ${JSON.stringify(e)}`);
        assert.equal(e.ref, ref, `the error carries the ref: ${JSON.stringify(req)}: ${JSON.stringify(e)}`);
        await stillOpen();
    }

    // A ref that is not a string of 1..64 characters is itself bad.
    for (const ref of [5, '', 'x'.repeat(65), null, ['a']]) {
        await c.send({ type: 'message', text: 'bad ref', ref });
        const e = await c.next('error');
        assert.equal(e.code, 'bad_request', `ref ${JSON.stringify(ref)}: ${JSON.stringify(e)}`);
        await stillOpen();
    }
    // 64 characters, multi-byte ones included, is a good ref.
    await post(c, 'long ref', 'é'.repeat(64));
    acked++;

    // Unknown fields are ignored; room in a frame is ignored.
    await c.send({ type: 'message', text: 'extra', ref: 'x-1', room: 'elsewhere', color: 'red' });
    const x1 = await reply(c, 'x-1');
    assert.equal(x1.type, 'ack');
    acked++;
    assert.equal(await psql(`SELECT room FROM messages WHERE id = ${x1.id}`), room);

    // Nothing refused was stored or broadcast: the watcher saw exactly the
    // acked messages, in order.
    const seen = await take(watcher, 'message', acked);
    assert.equal(seen.at(-1).id, x1.id);
    await watcher.expectNone('message', 300);
    assert.equal(await psql(`SELECT count(*) FROM messages WHERE room = '${room}'`), String(acked));
    assert.ok(!watcher.received.some((ev) => ev.type === 'edit'));
});

test('validation: text length is counted in code points, up to max_text_chars', async (t) => {
    const srv = await startChatd({ t, workers: 2, env: NO_RATE });
    const room = roomName('len');
    const c = await client(t, srv, room, srv.token({ sub: 'mia' }));
    const MAX = 2000; // the default max_text_chars
    const mine = await post(c, 'edit me');

    // Exactly MAX code points of 1, 2, 3 and 4 bytes each (and a mix) are
    // accepted; one more is too long. Byte counts would refuse the
    // multi-byte ones long before.
    const units = ['a', 'é', '€', '😀'];
    for (const u of units) {
        const ok = await post(c, u.repeat(MAX));
        const stored = await psql(`SELECT char_length(body) || ',' || octet_length(body) FROM messages WHERE id = ${ok.id}`);
        assert.equal(stored, `${MAX},${MAX * Buffer.byteLength(u)}`);
        await refused(c, { type: 'message', text: u.repeat(MAX + 1) }, 'too_long');
        await refused(c, { type: 'edit', id: mine.id, text: u.repeat(MAX + 1) }, 'too_long');
    }
    const mixed = 'a'.repeat(MAX - 3) + 'é€😀';
    await post(c, mixed);
    await refused(c, { type: 'message', text: `${mixed}x` }, 'too_long');
    // A combining sequence counts each code point: e + U+0301 is two.
    await post(c, 'e\u0301'.repeat(MAX / 2));
    await refused(c, { type: 'message', text: `${'e\u0301'.repeat(MAX / 2)}!` }, 'too_long');
    // Edits take the same limit.
    await c.send({ type: 'edit', id: mine.id, text: '😀'.repeat(MAX), ref: 'e-max' });
    assert.equal((await reply(c, 'e-max')).type, 'ack');
});

test('validation: max_text_chars is configurable', async (t) => {
    const srv = await startChatd({ t, workers: 2, env: { ...NO_RATE, CHAT_MAX_TEXT_CHARS: 5 } });
    const c = await client(t, srv, roomName('len5'), srv.token({ sub: 'mia' }));
    await post(c, '😀é€a😀');
    await refused(c, { type: 'message', text: '😀é€a😀b' }, 'too_long');
});

// ------------------------------------------------------------ idempotency

test('idempotent ref: a resend after reconnecting is acked with the original and not stored or broadcast again', async (t) => {
    const srv = await startChatd({ t, workers: 2, env: NO_RATE });
    const room = roomName('idem');
    const mia = srv.token({ sub: 'mia', name: 'Mia' });
    const watchers = await openSpread(t, srv, room, [srv.token({ sub: 'wes' })], 4);
    let c = await client(t, srv, room, mia);

    const first = await post(c, 'only once', 'ref-1');
    for (const w of watchers) assert.equal((await w.next('message')).id, first.id);

    // Same connection: same ack.
    const again = await post(c, 'only once', 'ref-1');
    assert.deepEqual(again, first);

    // After a reconnect (perhaps on the other worker), with another text.
    await c.close();
    c = await client(t, srv, room, mia);
    assert.equal(c.welcome.last_seq, first.seq);
    const resent = await post(c, 'only once (resent)', 'ref-1');
    assert.deepEqual(
        [resent.op, resent.ref, resent.id, resent.seq, resent.created_at],
        ['message', 'ref-1', first.id, first.seq, first.created_at]);

    // It took no seq: the next message has the next one. The watchers saw
    // the first one once, then this one.
    const next = await post(c, 'the next one', 'ref-2');
    assert.equal(next.seq, first.seq + 1);
    for (const w of watchers) {
        const m = await w.next('message');
        assert.equal(m.id, next.id, `after the resend: ${JSON.stringify(m)}`);
        assert.equal(w.received.filter((ev) => ev.type === 'message' && ev.id === first.id).length, 1);
    }
    assert.equal(await psql(`SELECT count(*) FROM messages WHERE room = '${room}' AND ref = 'ref-1'`), '1');
    assert.equal(await psql(`SELECT body FROM messages WHERE id = ${first.id}`), 'only once');
    assert.equal(await psql(`SELECT count(*) FROM room_events WHERE room = '${room}'`), '2');

    // A ref is per user and per room: another user, or another room, may
    // use the same one.
    const other = await client(t, srv, room, srv.token({ sub: 'max' }));
    const theirs = await post(other, 'same ref, other user', 'ref-1');
    assert.notEqual(theirs.id, first.id);
    const elsewhere = await client(t, srv, roomName('idem2'), mia);
    const there = await post(elsewhere, 'same ref, other room', 'ref-1');
    assert.notEqual(there.id, first.id);

    // Concurrent duplicates from two connections store once.
    const c2 = await client(t, srv, room, mia);
    await Promise.all([c.send({ type: 'message', text: 'race', ref: 'ref-3' }),
        c2.send({ type: 'message', text: 'race', ref: 'ref-3' })]);
    const [r1, r2] = await Promise.all([reply(c, 'ref-3'), reply(c2, 'ref-3')]);
    assert.equal(r1.type, 'ack');
    assert.deepEqual(r2, r1);
    assert.equal(await psql(`SELECT count(*) FROM messages WHERE room = '${room}' AND ref = 'ref-3'`), '1');
});

// ------------------------------------------------------------- rate limit

test('rate limit: per user across connections on both workers, checked before validation', async (t) => {
    // A slow refill (one token per 5 s) so that the burst, not the speed
    // of this machine, decides what passes.
    const srv = await startChatd({ t, workers: 2, env: { CHAT_RATE_PER_SEC: 0.2, CHAT_RATE_BURST: 3 } });
    const room = roomName('rate');
    const mia = srv.token({ sub: 'mia', name: 'Mia' });
    const [c1, c2] = await twoWorkers(t, srv, room, mia);
    const other = await client(t, srv, room, srv.token({ sub: 'max' }));

    const refs = ['q0', 'q1', 'q2', 'q3', 'q4', 'q5'];
    const conn = (i) => (i % 2 ? c2 : c1);
    await Promise.all(refs.map((ref, i) => conn(i).send({ type: 'message', text: `burst ${ref}`, ref })));
    const replies = await Promise.all(refs.map((ref, i) => reply(conn(i), ref)));
    const acks = replies.filter((r) => r.type === 'ack');
    const limited = replies.filter((r) => r.type === 'error');
    assert.equal(acks.length, 3, JSON.stringify(replies));
    assert.equal(limited.length, 3, JSON.stringify(replies));
    for (const e of limited) {
        assert.equal(e.code, 'rate_limited', JSON.stringify(e));
        assert.ok(Number.isInteger(e.retry_after_ms) && e.retry_after_ms > 0, JSON.stringify(e));
        assert.ok(e.retry_after_ms <= 5000, JSON.stringify(e));
    }

    // Over the rate, whatever else is wrong gets rate_limited, and so do
    // typing-free requests of every kind; typing is not counted nor answered.
    await c1.send({ type: 'typing' });
    for (const req of [
        { type: 'message', text: '' },
        { type: 'message', text: 5 },
        { type: 'message', text: 'x'.repeat(2001) },
        { type: 'edit', id: -1, text: 'x' },
        { type: 'edit', id: acks[0].id, text: 'x' },
        { type: 'delete', id: 'nope' },
        { type: 'message', text: 'valid', ref: acks[0].ref }, // a repeated ref counts too
    ]) {
        const e = await refused(conn(Math.floor(Math.random() * 2)), req, 'rate_limited');
        assert.ok(e.retry_after_ms > 0, JSON.stringify(e));
    }

    // Another user is unaffected.
    const theirs = await post(other, 'not limited');
    assert.ok(theirs.id > 0);

    // Refused requests count: three invalid ones use up a fresh user's
    // burst, and a valid one after them is over the rate.
    const zed = await client(t, srv, room, srv.token({ sub: 'zed' }));
    await refused(zed, { type: 'message', text: ' ' }, 'empty');
    await refused(zed, { type: 'edit', id: theirs.id, text: 'not mine' }, 'forbidden');
    await refused(zed, { type: 'delete', id: 0 }, 'bad_request');
    await refused(zed, { type: 'message', text: 'valid at last' }, 'rate_limited');

    // Only the acked ones were stored.
    assert.equal(await psql(`SELECT count(*) FROM messages WHERE room = '${room}' AND user_id = 'mia'`), '3');
});

test('rate limit: a flood is refused without asking Redis again, and no longer than Redis would', async (t) => {
    // The default rate: 5/s, burst 10.
    const srv = await startChatd({ t, workers: 1 });
    const room = roomName('flood');
    const c = await client(t, srv, room, srv.token({ sub: 'flooder', name: 'F' }));
    const before = await metricCounter(srv, 'chatd_rate_limited_locally_total');
    assert.equal(before, 0);

    const N = 300;
    const refs = Array.from({ length: N }, (_, i) => `f${i}`);
    for (const ref of refs) c.send({ type: 'message', text: `flood ${ref}`, ref });
    const replies = await take(c, (e) => e.type === 'ack' || e.type === 'error', N);
    assert.deepEqual(replies.map((r) => r.ref).sort(), [...refs].sort(), 'one reply per request');
    const acks = replies.filter((r) => r.type === 'ack');
    const limited = replies.filter((r) => r.type === 'error');
    assert.ok(acks.length >= 10, `the burst passes: ${acks.length} acks`);
    for (const e of limited) {
        assert.equal(e.code, 'rate_limited', JSON.stringify(e));
        // A token comes every 200 ms at 5/s.
        assert.ok(Number.isInteger(e.retry_after_ms) && e.retry_after_ms >= 1 && e.retry_after_ms <= 200,
            JSON.stringify(e));
    }
    // Once Redis has refused the user, the refusals that follow are given
    // here: the frames after the first answers cost Redis nothing.
    const local = (await metricCounter(srv, 'chatd_rate_limited_locally_total')) - before;
    assert.ok(local >= N / 2 && local <= limited.length, `${local} of ${limited.length} refusals given locally`);
    assert.equal(await psql(`SELECT count(*) FROM messages WHERE room = '${room}'`), String(acks.length));

    // The refusal lasts no longer than Redis's: once the retry_after_ms
    // of the refusals that followed the last ack has passed (a refill
    // interval if none did), a message is stored.
    const lastAck = replies.findLastIndex((r) => r.type === 'ack');
    const after = replies.slice(lastAck + 1).map((r) => r.retry_after_ms);
    await new Promise((r) => setTimeout(r, (after.length ? Math.max(...after) : 200) + 50));
    await post(c, 'after the wait');
});

test('a connection that sends faster than it is answered waits on TCP, and every request is answered', async (t) => {
    const srv = await startChatd({ t, workers: 1, env: NO_RATE });
    const room = roomName('pipelined');
    const c = await client(t, srv, room, srv.token({ sub: 'fast', name: 'Fast' }));
    const N = 1000;
    const refs = Array.from({ length: N }, (_, i) => `p${i}`);
    for (const ref of refs) c.send({ type: 'message', text: `fast ${ref}`, ref });
    const acks = await take(c, (e) => e.type === 'ack' || e.type === 'error', N, 60000);
    const byRef = new Map(acks.map((a) => [a.ref, a]));
    assert.equal(byRef.size, N);
    for (const a of acks) assert.equal(a.type, 'ack', JSON.stringify(a));
    // Sent order is commit order in a room.
    for (let i = 1; i < N; i++) assert.ok(byRef.get(refs[i]).seq > byRef.get(refs[i - 1]).seq, refs[i]);
    // The limit of requests in flight was reached, and reading resumed.
    assert.ok((await metricCounter(srv, 'chatd_websocket_reads_paused_total')) > 0);
    await post(c, 'still served');
    assert.equal(await psql(`SELECT count(*) FROM messages WHERE room = '${room}'`), String(N + 1));
});

// ------------------------------------------------------------ history REST

test('history: pages, cursors, has_more, item fields, token in header or query', async (t) => {
    const srv = await startChatd({ t, workers: 2, env: NO_RATE });
    const room = roomName('hist');
    const TOTAL = 123;
    const toks = ['ann', 'ben', 'cy'].map((sub) => srv.token({ sub, name: sub.toUpperCase() }));
    const senders = await openSpread(t, srv, room, toks, 3);
    const acks = [];
    // A few at a time, so the order of ids is the order of sending.
    for (let i = 0; i < TOTAL; i += 3) {
        const batch = [];
        for (let k = i; k < Math.min(TOTAL, i + 3); k++) {
            batch.push(post(senders[k % senders.length], `message number ${k}`, `h${k}`));
        }
        acks.push(...await Promise.all(batch));
    }
    const ids = acks.map((a) => a.id).sort((a, b) => a - b);
    assert.equal(new Set(ids).size, TOTAL);
    // One of them edited: history shows its latest seq and edited_at.
    const edited = acks[7];
    await senders[7 % senders.length].send({ type: 'edit', id: edited.id, text: 'number 7, edited', ref: 'e7' });
    const e7 = await reply(senders[7 % senders.length], 'e7');
    assert.equal(e7.type, 'ack');
    const tok = toks[0];

    // Default: the newest 50, ascending, more before them.
    const d = await history(srv, tok, `room=${room}`);
    assert.equal(d.status, 200, d.body);
    assert.match(d.headers['content-type'], /^application\/json/);
    assert.equal(d.json.room, room);
    assert.equal(d.json.has_more, true);
    assert.deepEqual(d.json.messages.map((m) => m.id), ids.slice(-50));
    // The same with the token as a parameter.
    const q = await httpGet(srv.port, `/api/chat/messages?room=${room}&token=${tok}`);
    assert.equal(q.status, 200, q.body);
    assert.deepEqual(q.json, d.json);

    // Item fields.
    const byId = new Map(acks.map((a, k) => [a.id, { ack: a, k }]));
    for (const m of d.json.messages) {
        const { ack, k } = byId.get(m.id);
        assert.equal(m.room, room);
        assert.equal(m.seq, ack.seq);
        assert.equal(m.created_at, ack.created_at);
        assert.equal(m.text, `message number ${k}`);
        const sub = ['ann', 'ben', 'cy'].find((s) => m.user.id === s);
        assert.deepEqual(m.user, { id: sub, name: sub.toUpperCase() });
        assert.ok(!('edited_at' in m) && !('deleted_at' in m) && !('type' in m));
    }
    const e = (await history(srv, tok, `room=${room}&after=${edited.id - 1}&limit=1`)).json;
    assert.equal(e.messages.length, 1);
    const em = e.messages[0];
    assert.deepEqual([em.id, em.seq, em.text, em.edited_at, em.created_at],
        [edited.id, e7.seq, 'number 7, edited', e7.edited_at, edited.created_at]);

    // Backwards from the newest page: every message once, then has_more false.
    let walked = [...d.json.messages.map((m) => m.id)];
    let page = d.json;
    for (let i = 0; page.has_more; i++) {
        assert.ok(i < 10, 'backward paging ends');
        page = (await history(srv, tok, `room=${room}&before=${page.messages[0].id}`)).json;
        const pids = page.messages.map((m) => m.id);
        assert.deepEqual(pids, [...pids].sort((a, b) => a - b), 'ascending');
        walked = [...pids, ...walked];
    }
    assert.deepEqual(walked, ids);
    assert.equal(page.messages.length, TOTAL - 100);

    // Forwards from after=0.
    walked = [];
    page = { has_more: true, messages: [{ id: 0 }] };
    for (let i = 0; page.has_more; i++) {
        assert.ok(i < 10, 'forward paging ends');
        const r = await history(srv, tok, `room=${room}&after=${page.messages.at(-1).id}&limit=40`);
        assert.equal(r.status, 200, r.body);
        page = r.json;
        walked.push(...page.messages.map((m) => m.id));
    }
    assert.deepEqual(walked, ids);
    const end = await history(srv, tok, `room=${room}&after=${ids.at(-1)}`);
    assert.deepEqual([end.status, end.json.messages, end.json.has_more], [200, [], false]);
    const start = await history(srv, tok, `room=${room}&before=${ids[0]}`);
    assert.deepEqual([start.status, start.json.messages, start.json.has_more], [200, [], false]);

    // Limits and has_more at the edges.
    const all = await history(srv, tok, `room=${room}&limit=200`);
    assert.deepEqual([all.json.messages.length, all.json.has_more], [TOTAL, false]);
    const exact = await history(srv, tok, `room=${room}&limit=${TOTAL}`);
    assert.deepEqual([exact.json.messages.length, exact.json.has_more], [TOTAL, false], 'a page of exactly what exists');
    const oneLess = await history(srv, tok, `room=${room}&limit=${TOTAL - 1}`);
    assert.deepEqual([oneLess.json.messages.length, oneLess.json.has_more], [TOTAL - 1, true]);
    const one = await history(srv, tok, `room=${room}&limit=1`);
    assert.deepEqual([one.json.messages.map((m) => m.id), one.json.has_more], [[ids.at(-1)], true]);
    const fwdExact = await history(srv, tok, `room=${room}&after=0&limit=${TOTAL}`);
    assert.deepEqual([fwdExact.json.messages.length, fwdExact.json.has_more], [TOTAL, false]);
    const mid = await history(srv, tok, `room=${room}&before=${ids[60]}&limit=5`);
    assert.deepEqual(mid.json.messages.map((m) => m.id), ids.slice(55, 60));
    const midAfter = await history(srv, tok, `room=${room}&after=${ids[60]}&limit=5`);
    assert.deepEqual(midAfter.json.messages.map((m) => m.id), ids.slice(61, 66));
    // Leading zeros still spell an integer (PROTOCOL.md asks for integers).
    const padded = await history(srv, tok, `room=${room}&after=000${ids[60]}&limit=005`);
    assert.equal(padded.status, 200, padded.body);
    assert.deepEqual(padded.json.messages.map((m) => m.id), ids.slice(61, 66));

    // An empty room.
    const empty = await history(srv, tok, `room=${roomName('nobody')}`);
    assert.deepEqual([empty.status, empty.json.messages, empty.json.has_more], [200, [], false]);
});

test('history: bad parameters, tokens and rooms are refused with the documented errors', async (t) => {
    const srv = await startChatd({ t, workers: 2 });
    const room = roomName('hbad');
    const tok = srv.token({ sub: 'ann' });
    const expectError = async (query, status, code, headers = auth(tok)) => {
        const r = await httpGet(srv.port, `/api/chat/messages${query}`, { headers });
        assert.equal(r.status, status, `${query}: ${r.status} ${r.body}`);
        assert.equal(r.json?.error?.code, code, `${query}: ${r.body}`);
        assert.equal(typeof r.json.error.message, 'string');
        assert.match(r.headers['content-type'], /^application\/json/);
    };
    for (const p of ['limit=0', 'limit=201', 'limit=abc', 'limit=-1', 'limit=', 'limit=1.5',
        'limit=99999999999999999999', 'before=x', 'before=-1', 'before=', 'after=1.5', 'after=-3', 'after=1e3']) {
        await expectError(`?room=${room}&${p}`, 400, 'bad_request');
    }
    await expectError('', 400, 'bad_request');
    await expectError('?limit=10', 400, 'bad_request');
    await expectError('?room=', 400, 'bad_request');
    await expectError('?room=bad%20room', 400, 'bad_request');
    await expectError(`?room=${'r'.repeat(65)}`, 400, 'bad_request');

    await expectError(`?room=${room}`, 401, 'unauthorized', {});
    await expectError(`?room=${room}`, 401, 'unauthorized', auth(srv.token({ sub: 'ann', badSignature: true })));
    await expectError(`?room=${room}`, 401, 'unauthorized', auth('not.a.token'));
    await expectError(`?room=${room}`, 401, 'unauthorized', auth(srv.token({ sub: 'ann', exp: 1000 })));
    await expectError(`?room=${room}&token=garbage`, 401, 'unauthorized', {});
    await expectError(`?room=${room}`, 401, 'unauthorized', { Authorization: 'Bearer ' });
    await expectError(`?room=${room}`, 401, 'unauthorized', { Authorization: `Basic ${tok}` });
    // Any case of the scheme, and more than one space after it (RFC 9110 11.4).
    for (const a of [`bearer ${tok}`, `Bearer   ${tok}`]) {
        const r = await httpGet(srv.port, `/api/chat/messages?room=${room}`, { headers: { Authorization: a } });
        assert.equal(r.status, 200, `${a}: ${r.body}`);
    }

    const limited = srv.token({ sub: 'ann', rooms: ['somewhere-else', 'x'] });
    await expectError(`?room=${room}`, 403, 'forbidden', auth(limited));
    await expectError(`?room=${room}&token=${limited}`, 403, 'forbidden', {});
    const allowed = await history(srv, srv.token({ sub: 'ann', rooms: ['x', room] }), `room=${room}`);
    assert.equal(allowed.status, 200, allowed.body);
});

test('REST CORS: preflight from an allowed origin, headers on GET, other origins refused', async (t) => {
    const origin = 'https://chat.example.com';
    const srv = await startChatd({ t, workers: 2, env: { CHAT_ALLOWED_ORIGINS: `${origin},http://localhost:3000` } });
    const room = roomName('cors');
    const tok = srv.token({ sub: 'ann' });
    for (const p of [`/api/chat/messages?room=${room}`, `/api/users?room=${room}`]) {
        const pre = await httpGet(srv.port, p, {
            method: 'OPTIONS',
            headers: { Origin: origin, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization' },
        });
        assert.equal(pre.status, 204, `${p}: ${pre.body}`);
        assert.equal(pre.headers['access-control-allow-origin'], origin);
        assert.match(pre.headers['access-control-allow-methods'], /\bGET\b/);
        assert.match(pre.headers['access-control-allow-headers'], /\bAuthorization\b/i);
        assert.equal(pre.body, '');

        const get = await httpGet(srv.port, p, { headers: { Origin: origin, ...auth(tok) } });
        assert.equal(get.status, 200, `${p}: ${get.body}`);
        assert.equal(get.headers['access-control-allow-origin'], origin);

        const bad = await httpGet(srv.port, p, { headers: { Origin: 'https://evil.example.com', ...auth(tok) } });
        assert.equal(bad.status, 403, `${p}: ${bad.body}`);
        assert.equal(bad.json?.error?.code, 'forbidden');
        assert.notEqual(bad.headers['access-control-allow-origin'], 'https://evil.example.com');
        const badPre = await httpGet(srv.port, p, {
            method: 'OPTIONS', headers: { Origin: 'https://evil.example.com', 'Access-Control-Request-Method': 'GET' },
        });
        assert.notEqual(badPre.status, 204);
        assert.equal(badPre.headers['access-control-allow-origin'], undefined);
    }
    // Errors carry the CORS header too, so the page can read them.
    const unauth = await httpGet(srv.port, `/api/chat/messages?room=${room}`, { headers: { Origin: origin } });
    assert.equal(unauth.status, 401);
    assert.equal(unauth.headers['access-control-allow-origin'], origin);
});

// ------------------------------------------------------------- users REST

test('users: online users of a room, and of every room', async (t) => {
    const srv = await startChatd({ t, workers: 2 });
    const room = roomName('users');
    const other = roomName('users2');
    const ann = srv.token({ sub: 'ann', name: 'Ann A.' });
    const ben = srv.token({ sub: 'ben', name: 'Ben B.' });
    const cy = srv.token({ sub: 'cy', name: 'Cy C.' });
    await twoWorkers(t, srv, room, ann); // two connections, one user
    const cBen = await client(t, srv, room, ben);
    await client(t, srv, other, cy);

    const users = async (q) => {
        const r = await httpGet(srv.port, `/api/users${q}`, { headers: auth(ann) });
        assert.equal(r.status, 200, r.body);
        return r.json;
    };
    const sorted = (list) => [...list].sort((a, b) => a.id.localeCompare(b.id));
    const inRoom = await waitFor(async () => {
        const j = await users(`?room=${room}`);
        return j.count === 2 ? j : null;
    }, 10000, 100, 'two users online in the room');
    assert.equal(inRoom.room, room);
    assert.deepEqual(sorted(inRoom.users), [{ id: 'ann', name: 'Ann A.' }, { id: 'ben', name: 'Ben B.' }]);
    assert.equal(inRoom.users.length, inRoom.count);

    const everyone = await users('');
    assert.equal(everyone.room, null);
    assert.deepEqual(sorted(everyone.users), [{ id: 'ann', name: 'Ann A.' }, { id: 'ben', name: 'Ben B.' }, { id: 'cy', name: 'Cy C.' }]);
    assert.equal(everyone.count, 3);

    // Token as a parameter; a room the token does not allow; a bad room.
    const viaQuery = await httpGet(srv.port, `/api/users?room=${room}&token=${ben}`);
    assert.equal(viaQuery.status, 200, viaQuery.body);
    assert.equal(viaQuery.json.count, 2);
    const limited = srv.token({ sub: 'ann', rooms: [other] });
    const forbidden = await httpGet(srv.port, `/api/users?room=${room}`, { headers: auth(limited) });
    assert.equal(forbidden.status, 403, forbidden.body);
    assert.equal(forbidden.json?.error?.code, 'forbidden');
    // Without a room the list spans every room: not for a token limited to some.
    const spanning = await httpGet(srv.port, '/api/users', { headers: auth(limited) });
    assert.equal(spanning.status, 403, spanning.body);
    assert.equal(spanning.json?.error?.code, 'forbidden');
    const inItsRoom = await httpGet(srv.port, `/api/users?room=${other}`, { headers: auth(limited) });
    assert.equal(inItsRoom.status, 200, inItsRoom.body);
    const badRoom = await httpGet(srv.port, '/api/users?room=no%20spaces', { headers: auth(ann) });
    assert.equal(badRoom.status, 400, badRoom.body);
    const noTok = await httpGet(srv.port, `/api/users?room=${room}`);
    assert.equal(noTok.status, 401, noTok.body);
    assert.equal(noTok.headers['www-authenticate'], 'Bearer', 'a 401 names its scheme');

    // Ben leaves: the room lists Ann alone.
    await cBen.close();
    const after = await waitFor(async () => {
        const j = await users(`?room=${room}`);
        return j.count === 1 ? j : null;
    }, 10000, 100, 'one user left in the room');
    assert.deepEqual(after.users, [{ id: 'ann', name: 'Ann A.' }]);
});

test('a welcome larger than max_outbuf_bytes is sent: a crowded room can still be joined', async (t) => {
    // 60,000 others online with long names: a welcome of about 6 MB
    // against a 4 KiB output limit, more than the kernel takes while the
    // client does not read yet. It was refused as a slow consumer's
    // output before the client could read a byte, at every reconnect; and
    // the events right behind it must not be held against the client
    // either while it is still on its way.
    const srv = await startChatd({ t, workers: 1, env: { CHAT_MAX_FRAME_BYTES: 1024, CHAT_MAX_OUTBUF_BYTES: 4096 } });
    const room = roomName('crowd');
    const N = 60000;
    await redisCli('EVAL', `for i = 0, ${N - 1} do redis.call('HSET', KEYS[1], 'u' .. i, string.rep('\u00e9', 40) .. ' ' .. i) end`,
        '1', `${srv.prefix}room_names:${room}`);
    const c = await openWs(srv.wsUrl(`/api/chat?room=${room}`), { token: srv.token({ sub: 'me', name: 'Me' }), expectWelcome: false });
    t.after(() => c.close());
    c.socket.pause();
    const other = await openWs(srv.wsUrl(`/api/chat?room=${room}`), { token: srv.token({ sub: 'you', name: 'You' }) });
    t.after(() => other.close());
    await other.send({ type: 'message', text: 'hello crowd', ref: 'h-1' });
    assert.equal((await other.next((e) => e.ref === 'h-1', 10000)).type, 'ack');
    await new Promise((resolve) => setTimeout(resolve, 300));
    c.socket.resume();
    const welcome = await c.next('welcome', 10000);
    assert.equal(welcome.online.length, N + 1);
    assert.ok(welcome.online.some((u) => u.id === `u${N - 1}` && u.name.endsWith(` ${N - 1}`)));
    assert.equal((await c.next('join', 10000)).user.id, 'you');
    assert.equal((await c.next('message', 10000)).text, 'hello crowd');
    await c.send({ type: 'message', text: 'in', ref: 'in-1' });
    assert.equal((await c.next((e) => e.ref === 'in-1', 10000)).type, 'ack');
    assert.equal(c.closeInfo, null);
});

test('users: names that need escaping come back intact, in the welcome and over REST', async (t) => {
    const srv = await startChatd({ t });
    const room = roomName('escape');
    const odd = { id: 'q"uo\\te', name: 'Zoë "Z" \\ 日本 </script>' };
    const plain = { id: 'pat', name: 'Pat' };
    await client(t, srv, room, srv.token({ sub: odd.id, name: odd.name }));
    const cPat = await client(t, srv, room, srv.token({ sub: plain.id, name: plain.name }));
    const byId = (a, b) => a.id.localeCompare(b.id);
    // The odd user was counted before Pat's join read the list.
    assert.deepEqual([...cPat.welcome.online].sort(byId), [odd, plain].sort(byId));
    assert.deepEqual(cPat.welcome.user, { ...plain, role: 'member' });
    const r = await httpGet(srv.port, `/api/users?room=${room}`, { headers: auth(srv.token({ sub: 'x' })) });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual([...r.json.users].sort(byId), [odd, plain].sort(byId));
    assert.equal(r.json.count, 2);
});
