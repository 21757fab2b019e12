// PostgreSQL going away under a running chatd (PROTOCOL.md section 3,
// "unavailable"; section 2, 503): requests fail at once with nothing
// stored or broadcast, and once PostgreSQL is back the same chatd works
// again and a resend with the same ref stores exactly once.
//
// Serial: this stops the shared test PostgreSQL, and always starts it
// again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { httpGet, openWs, psql, services, startChatd, waitFor } from '../../lib/harness.mjs';

const NO_RATE = { CHAT_RATE_PER_SEC: 100000, CHAT_RATE_BURST: 100000 };
const rnd = () => crypto.randomBytes(5).toString('hex');
const workerOf = (c) => c.welcome.conn_id.split('-').slice(0, 3).join('-');
const reply = (c, ref, ms = 20000) =>
    c.next((ev) => (ev.type === 'ack' || ev.type === 'error') && ev.ref === ref, ms);

async function send(c, req) {
    await c.send(req);
    return reply(c, req.ref);
}

test('postgresql outage: unavailable, nothing stored or broadcast; afterwards a resend stores once', async (t) => {
    const srv = await startChatd({ t, workers: 2, env: NO_RATE });
    const room = `pgdown-${rnd()}`;
    const mia = srv.token({ sub: 'mia', name: 'Mia' });
    const open = async (tok) => {
        const c = await openWs(srv.wsUrl(`/api/chat?room=${room}`), { token: tok });
        t.after(() => c.close());
        return c;
    };
    const sender = await open(mia);
    // Watchers on both workers (bounded).
    const watchers = [];
    const wes = srv.token({ sub: 'wes' });
    while (watchers.length < 4 || new Set([sender, ...watchers].map(workerOf)).size < 2) {
        assert.ok(watchers.length < 40, 'connections all landed on one worker');
        watchers.push(await open(wes));
    }

    const first = await send(sender, { type: 'message', text: 'before the outage', ref: 'pre-1' });
    assert.equal(first.type, 'ack', JSON.stringify(first));
    for (const w of watchers) assert.equal((await w.next('message')).id, first.id);

    const failed = [];
    let stoppedAt;
    try {
        await services('stop-pg');
        stoppedAt = Date.now();
        // The first requests may find a connection that has not noticed
        // yet; whatever they get, one soon gets `unavailable`.
        let i = 0;
        await waitFor(async () => {
            const ref = `down-${i++}`;
            const r = await send(sender, { type: 'message', text: `during ${ref}`, ref });
            assert.equal(r.type, 'error', `stored while PostgreSQL is stopped: ${JSON.stringify(r)}`);
            assert.equal(r.code, 'unavailable', JSON.stringify(r));
            failed.push(ref);
            return true;
        }, 30000, 200, 'a send answered with unavailable');
        // From then on, every write is unavailable, the socket stays open.
        for (let k = 0; k < 3; k++) {
            const ref = `down-more-${k}`;
            const r = await send(sender, { type: 'message', text: `during ${ref}`, ref });
            assert.deepEqual([r.type, r.code], ['error', 'unavailable'], JSON.stringify(r));
            assert.equal(typeof r.message, 'string');
            failed.push(ref);
        }
        const e = await send(sender, { type: 'edit', id: first.id, text: 'edited during', ref: 'down-edit' });
        assert.deepEqual([e.type, e.code], ['error', 'unavailable'], JSON.stringify(e));
        const d = await send(sender, { type: 'delete', id: first.id, ref: 'down-delete' });
        assert.deepEqual([d.type, d.code], ['error', 'unavailable'], JSON.stringify(d));
        // Reads over REST say so too.
        const h = await httpGet(srv.port, `/api/chat/messages?room=${room}`, { headers: { Authorization: `Bearer ${mia}` } });
        assert.equal(h.status, 503, h.body);
        assert.equal(h.json?.error?.code, 'unavailable');
        // Typing needs no database and still works.
        await sender.send({ type: 'typing' });
        for (const w of watchers) assert.equal((await w.next('typing')).user.id, 'mia');
        for (const c of [sender, ...watchers]) assert.equal(c.closeInfo, null, 'sockets stay open');
    } finally {
        await services('start-pg');
    }
    t.diagnostic(`unavailable within ${Date.now() - stoppedAt} ms of the stop, ${failed.length} refused sends`);

    // The same chatd recovers (bounded; the pool reconnects with backoff).
    let j = 0;
    const back = await waitFor(async () => {
        const ref = `back-${j++}`;
        const r = await send(sender, { type: 'message', text: `after ${ref}`, ref });
        if (r.type === 'error') {
            assert.equal(r.code, 'unavailable', JSON.stringify(r));
            failed.push(ref);
            return null;
        }
        return r;
    }, 60000, 250, 'a send acked after PostgreSQL came back');
    // Refused sends took no seq.
    assert.equal(back.seq, first.seq + 1);

    // Resending a refused one stores it now, once.
    const resend = await send(sender, { type: 'message', text: `during ${failed[0]}`, ref: failed[0] });
    assert.equal(resend.type, 'ack', JSON.stringify(resend));
    assert.equal(resend.seq, back.seq + 1);
    const again = await send(sender, { type: 'message', text: `during ${failed[0]}`, ref: failed[0] });
    assert.deepEqual(again, resend);
    const fence = await send(sender, { type: 'message', text: 'the end', ref: 'post-end' });
    assert.equal(fence.seq, resend.seq + 1);

    // Watchers saw exactly the stored messages, in seq order, once each:
    // nothing of the outage, the resend once.
    for (const w of watchers) {
        const got = [];
        while (got.length < 3) got.push(await w.next('message', 20000));
        assert.deepEqual(got.map((m) => [m.id, m.seq]),
            [[back.id, back.seq], [resend.id, resend.seq], [fence.id, fence.seq]]);
        assert.ok(!w.received.some((ev) => ev.type === 'edit' || ev.type === 'delete'));
        await w.expectNone('message', 300);
    }

    // PostgreSQL holds no trace of the refused requests beside the resend,
    // and the room's change log has no gap.
    const refused = failed.slice(1).map((r) => `'${r}'`).join(',');
    assert.equal(await psql(`SELECT count(*) FROM messages WHERE room = '${room}' AND ref IN (${refused})`), '0');
    assert.equal(await psql(`SELECT count(*) FROM messages WHERE room = '${room}' AND ref = '${failed[0]}'`), '1');
    assert.equal(await psql(`SELECT count(*) || ',' || bool_and(edited_at IS NULL AND deleted_at IS NULL)::text FROM messages WHERE room = '${room}'`), '4,true');
    assert.equal(await psql(`SELECT seq FROM rooms WHERE name = '${room}'`), String(fence.seq));
    assert.equal(await psql(`SELECT count(*) || ',' || min(seq) || ',' || max(seq) FROM room_events WHERE room = '${room}'`), `${fence.seq},1,${fence.seq}`);
});
