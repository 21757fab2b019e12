// The hub through a Redis restart (docs/redis.md): two instances, clients
// on all four workers, messages sent steadily from both instances while
// Redis stops for a few seconds and comes back empty. Requests made while
// it is down may be refused (`unavailable`: nothing stored); every message
// that was acked reaches every client that stayed connected exactly once,
// in seq order, and presence is rebuilt. chatctl fails with exit 1 while
// Redis is down.
//
// Serial: this stops the shared test Redis, and always starts it again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
    chatctlFor, httpGet, openWs, psql, redisCli, services, sleep, startChatd, waitFor,
} from '../../lib/harness.mjs';

const REPLY_MS = 20000;
const rnd = () => crypto.randomBytes(5).toString('hex');
const workerOf = (c) => c.welcome.conn_id.split('-').slice(0, 3).join('-');
const sorted = (a) => [...a].sort();
const smembers = async (key) => sorted((await redisCli('SMEMBERS', key)).split('\n').filter(Boolean));

/** Opens user's connection on worker index `worker` of srv (in first-seen order). */
const keysBySrv = new Map();
async function join(srv, room, sub, worker) {
    if (!keysBySrv.has(srv)) keysBySrv.set(srv, []);
    const keys = keysBySrv.get(srv);
    const extras = [];
    try {
        for (let i = 0; i < 80; i++) {
            const c = await openWs(srv.wsUrl(`/api/chat?room=${room}`), { token: srv.token({ sub }) });
            const k = workerOf(c);
            if (!keys.includes(k)) keys.push(k);
            if (keys[worker] === k) {
                c.user = sub;
                return c;
            }
            extras.push(c);
        }
        throw new Error(`no connection landed on worker ${worker}`);
    } finally {
        await Promise.all(extras.map((c) => c.close()));
    }
}

const chatctl = (srv, args) => chatctlFor(srv, args, {}, 30000);

/** Every worker of both instances ready: /readyz 200 on a batch of fresh requests. */
async function ready(srv) {
    const rs = await Promise.all(Array.from({ length: 8 }, () => httpGet(srv, '/readyz', { timeoutMs: 5000 })));
    return rs.every((r) => r.status === 200);
}

/** Sends a message every few ms until stop.v; records each reply by ref. */
async function sender(c, stop, sent) {
    for (let i = 0; !stop.v; i++) {
        const ref = `${c.user}-${i}`;
        const text = `${c.user} ${i}`;
        await c.send({ type: 'message', text, ref });
        const r = await c.next((e) => (e.type === 'ack' || e.type === 'error') && e.ref === ref, REPLY_MS);
        sent.push({ ref, text, reply: r, at: Date.now() });
        await sleep(60);
    }
}

test('Redis restart: acked messages reach everyone once and in order; presence is rebuilt', async (t) => {
    const secret = crypto.randomBytes(24).toString('hex');
    const prefix = `hubr${rnd()}:`;
    const opts = { t, secret, prefix, workers: 2, env: { CHAT_RATE_PER_SEC: 100000, CHAT_RATE_BURST: 100000 } };
    const a = await startChatd(opts);
    const b = await startChatd(opts);
    const room = `restart-${rnd()}`;
    const clients = [
        await join(a, room, 'r0', 0),
        await join(a, room, 'r1', 1),
        await join(b, room, 'r2', 0),
        await join(b, room, 'r3', 1),
    ];
    assert.equal(new Set(clients.map(workerOf)).size, 4);
    const users = clients.map((c) => c.user);
    await waitFor(async () => (await smembers(`${prefix}online:${room}`)).join() === users.join(), 5000, 50, 'all online');

    const stop = { v: false };
    const sent = [];
    const senders = [sender(clients[0], stop, sent), sender(clients[3], stop, sent)];
    const acked = () => sent.filter((s) => s.reply.type === 'ack');
    let downAt;
    let upAt;
    try {
        await waitFor(() => acked().length >= 10, 20000, 20, '10 acks before the outage');
        try {
            await services('stop-redis');
            downAt = Date.now();
            const ctl = await chatctl(a, ['online', room]);
            assert.equal(ctl.code, 1, `chatctl online with Redis down: exit ${ctl.code} ${ctl.stderr}`);
            assert.equal(ctl.stderr.split('\n').filter(Boolean).length, 1, ctl.stderr);
            assert.match(ctl.stderr, /^chatctl: /);
            const kick = await chatctl(b, ['kick', 'r0']);
            assert.equal(kick.code, 1, kick.stderr);
            await sleep(3000);
        } finally {
            await services('start-redis');
            upAt = Date.now();
        }
        await waitFor(async () => (await ready(a)) && (await ready(b)), 30000, 200, '/readyz 200 on both instances');
        const afterUp = () => acked().filter((s) => s.at > upAt).length;
        await waitFor(() => afterUp() >= 10, 30000, 20, '10 acks after the recovery');
    } finally {
        stop.v = true;
        await Promise.allSettled(senders);
    }
    const refused = sent.filter((s) => s.reply.type === 'error');
    for (const s of refused) assert.equal(s.reply.code, 'unavailable', JSON.stringify(s.reply));
    t.diagnostic(`${sent.length} sent, ${acked().length} acked, ${refused.length} unavailable; ` +
        `down ${upAt - downAt} ms`);

    // The database holds exactly the acked messages.
    const rows = (await psql(`SELECT id, ref, seq FROM messages WHERE room = '${room}' ORDER BY id`))
        .split('\n').filter(Boolean).map((l) => l.split('|'));
    const ackedList = acked();
    assert.deepEqual(sorted(rows.map((r) => r[1])), sorted(ackedList.map((s) => s.ref)), 'stored = acked');
    for (const s of ackedList) {
        const row = rows.find((r) => r[1] === s.ref);
        assert.equal(Number(row[0]), s.reply.id, `${s.ref}: acked id is the stored id`);
    }
    const want = ackedList.map((s) => s.reply.seq).sort((x, y) => x - y);

    // Every client that stayed connected gets each acked message once, in
    // seq order (after the outage the gap is read from PostgreSQL).
    const stayed = clients.filter((c) => c.readyState === 1);
    assert.ok(stayed.length > 0, 'some clients stayed connected');
    t.diagnostic(`${stayed.length} of ${clients.length} clients stayed connected`);
    const seqsOf = (c) => c.received.filter((e) => e.type === 'message').map((e) => e.seq);
    await waitFor(() => stayed.every((c) => seqsOf(c).length >= want.length), 15000, 50, 'every acked message delivered')
        .catch((e) => assert.fail(`${e.message}: want ${want.length}, got ${stayed.map((c) => `${c.user}: ${seqsOf(c).length}`)}`));
    for (const c of stayed) {
        const msgs = c.received.filter((e) => e.type === 'message');
        assert.deepEqual(msgs.map((e) => e.seq), want, `${c.user}: every acked message once, in seq order`);
        for (const m of msgs) {
            const s = ackedList.find((x) => x.reply.id === m.id);
            assert.ok(s, `${c.user} got message ${m.id} that was never acked`);
            assert.equal(m.text, s.text);
        }
    }

    // Presence is rebuilt: Redis came back empty, the workers reconcile.
    const stayedUsers = sorted(stayed.map((c) => c.user));
    await waitFor(async () => (await smembers(`${prefix}online:${room}`)).join() === stayedUsers.join(), 10000, 100,
        'the room set holds the connected users again');
    assert.deepEqual(await smembers(`${prefix}online`), stayedUsers);
    for (const u of stayedUsers) assert.equal(await redisCli('HGET', `${prefix}user:${u}`, 'name'), u);
    const ctl = await chatctl(a, ['online', room]);
    assert.equal(ctl.code, 0, ctl.stderr);
    assert.deepEqual(sorted(ctl.stdout.split('\n').filter(Boolean)), stayedUsers.map((u) => `${u}\t${u}`));

    // And the hub works as before: control channel and presence events.
    await waitFor(async () => Number((await redisCli('PUBSUB', 'NUMSUB', `${prefix}control`)).split('\n')[1]) === 4,
        10000, 100, 'every worker listens on the control channel again');
    const late = await openWs(b.wsUrl(`/api/chat?room=${room}`), { token: b.token({ sub: 'late' }) });
    assert.deepEqual(sorted(late.welcome.online.map((u) => u.id)), sorted([...stayedUsers, 'late']));
    for (const c of stayed) await c.next((e) => e.type === 'join' && e.user.id === 'late', REPLY_MS);
});
