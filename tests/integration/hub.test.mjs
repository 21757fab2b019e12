// The distributed hub (PROTOCOL.md sections 3 to 5, docs/redis.md): two
// chatd instances (two masters, two workers each) sharing one Redis prefix
// and one database act as one chat. Messages, typing, presence, kicks and
// notices cross workers and hosts; join/leave is announced once per user
// per room however many tabs; presence stays true when a worker or a whole
// host dies; a reconnect with since misses nothing and repeats nothing;
// a PUBLISH that Redis never delivers is repaired from PostgreSQL; chatctl
// drives all of it through Redis.
//
// Every test starts its own pair of instances (a fresh Redis prefix) and
// uses rooms with a random suffix. Clients are placed on given workers
// where that matters: the first three groups of a conn_id name the worker
// process, so a connection that lands elsewhere is closed and another one
// opened (the user keeps one open connection throughout, so placement
// announces one join and no leave).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import {
    auth, chatctlFor, decodeToken, expectHttpError, httpGet, NO_RATE, openWs, psql, redisCli, rnd, roomName, startChatd, waitFor, workerOf,
} from '../lib/harness.mjs';

const REPLY_MS = 15000;

const sorted = (a) => [...a].sort();
const ids = (users) => sorted(users.map((u) => u.id));
const isChange = (e) => e.type === 'message' || e.type === 'edit' || e.type === 'delete';

/** Two instances sharing one hub: same Redis prefix, same secret, same database. */
async function startPair(t, extraEnv = {}) {
    const secret = crypto.randomBytes(24).toString('hex');
    const prefix = `hub${rnd()}:`;
    const opts = { t, secret, prefix, workers: 2, env: { ...NO_RATE, ...extraEnv } };
    const a = await startChatd(opts);
    const b = await startChatd(opts);
    a.name = 'A';
    b.name = 'B';
    await controlReady(prefix, 4);
    return [a, b];
}

/** Waits until n workers listen on the control channel (kicks reach them all). */
async function controlReady(prefix, n) {
    await waitFor(async () => {
        const out = (await redisCli('PUBSUB', 'NUMSUB', `${prefix}control`)).split('\n');
        return Number(out[1]) === n;
    }, 10000, 50, `${n} workers subscribed to ${prefix}control`);
}

// Worker ids per instance, in the order they were first seen.
const workerKeys = new WeakMap();

/**
 * Opens a connection of user claims.sub into room on srv, on the given
 * worker index (0 or 1, in the order workers were first seen) or on any
 * worker. Connections that land on the wrong worker are kept open until
 * the right one is, then closed: the user never drops to zero connections.
 */
async function join(srv, room, claims, { worker, since } = {}) {
    let q = `/api/chat?room=${encodeURIComponent(room)}`;
    if (since !== undefined) q += `&since=${since}`;
    const token = srv.token(claims);
    if (!workerKeys.has(srv)) workerKeys.set(srv, []);
    const keys = workerKeys.get(srv);
    const extras = [];
    try {
        for (let i = 0; i < 80; i++) {
            const c = await openWs(srv.wsUrl(q), { token });
            const k = workerOf(c);
            if (!keys.includes(k)) keys.push(k);
            if (worker === undefined || keys[worker] === k) {
                c.user = claims.sub;
                c.srv = srv;
                return c;
            }
            extras.push(c);
        }
        throw new Error(`80 connections to ${srv.name} and none on its worker ${worker}`);
    } finally {
        await Promise.all(extras.map((c) => c.close()));
    }
}

/** Sends a request and resolves with its ack or error. */
async function request(c, req) {
    const ref = req.ref ?? `r-${rnd()}`;
    await c.send({ ...req, ref });
    return c.next((e) => (e.type === 'ack' || e.type === 'error') && e.ref === ref, REPLY_MS);
}

async function post(c, text) {
    const r = await request(c, { type: 'message', text });
    assert.equal(r.type, 'ack', `message from ${c.user}: ${JSON.stringify(r)}`);
    return r;
}

/**
 * An ordering barrier: sender posts a message and every client waits for
 * it. Whatever Redis published on the room's channel before that message
 * (join, leave, typing) has then reached every client.
 */
async function barrier(sender, clients) {
    const text = `barrier ${rnd()}`;
    await post(sender, text);
    await Promise.all(clients.map((c) => c.next((e) => e.type === 'message' && e.text === text, REPLY_MS)));
}

/** Events of type about user (join, leave, typing) that c received so far. */
const presenceOf = (c, type, user, room = undefined) =>
    c.received.filter((e) => e.type === type && e.user?.id === user && (room === undefined || e.room === room));

const smembers = async (key) => sorted((await redisCli('SMEMBERS', key)).split('\n').filter(Boolean));

/** The pid of the worker of srv that holds client c's connection (via /proc). */
function serverPidOf(srv, c) {
    const hex = (n) => n.toString(16).toUpperCase().padStart(4, '0');
    const local = hex(srv.port);
    const remote = hex(c.socket.localPort);
    let inode;
    for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
        let text;
        try {
            text = fs.readFileSync(f, 'utf8');
        } catch {
            continue;
        }
        for (const line of text.split('\n').slice(1)) {
            const cols = line.trim().split(/\s+/);
            if (cols.length < 10) continue;
            if (cols[1].endsWith(`:${local}`) && cols[2].endsWith(`:${remote}`)) inode = cols[9];
        }
    }
    assert.ok(inode, `no server socket for client port ${c.socket.localPort}`);
    for (const pid of srv.children()) {
        for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
            try {
                if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) return pid;
            } catch { /* closed meanwhile */ }
        }
    }
    assert.fail(`no worker of ${srv.name} holds socket ${inode}`);
}

/** Runs bin/chatctl against srv's hub: {code, stdout, stderr}. */
const chatctl = (srv, args, extraEnv = {}) => chatctlFor(srv, args, extraEnv, 20000);

// ---------------------------------------------------------------------------

test('messages, typing and join/leave cross workers and instances', async (t) => {
    const [a, b] = await startPair(t);
    const room = roomName('cross');
    const c = [
        await join(a, room, { sub: 'u0', name: 'User Zero' }, { worker: 0 }),
        await join(a, room, { sub: 'u1' }, { worker: 1 }),
        await join(b, room, { sub: 'u2' }, { worker: 0 }),
        await join(b, room, { sub: 'u3' }, { worker: 1 }),
    ];
    assert.equal(new Set(c.map(workerOf)).size, 4, 'one client on each of the four workers');
    assert.deepEqual(c[3].welcome.online.find((u) => u.id === 'u0'), { id: 'u0', name: 'User Zero' });
    assert.deepEqual(ids(c[3].welcome.online), ['u0', 'u1', 'u2', 'u3'], 'welcome.online spans instances');

    // Each posts one message: everyone gets all four, the sender included,
    // in seq order, with the same content.
    const acks = [];
    for (const [i, x] of c.entries()) acks.push(await post(x, `hello from ${i}`));
    for (const x of c) {
        const got = [];
        for (let i = 0; i < 4; i++) got.push(await x.next((e) => e.type === 'message' && e.text === `hello from ${i}`, REPLY_MS));
        assert.deepEqual(got.map((e) => e.id), acks.map((k) => k.id), `${x.user}: ids`);
        assert.deepEqual(got.map((e) => e.seq), acks.map((k) => k.seq), `${x.user}: seqs`);
        assert.deepEqual(got.map((e) => e.user.id), ['u0', 'u1', 'u2', 'u3']);
        assert.equal(got[0].user.name, 'User Zero');
    }

    // Joins: every earlier client saw each later user join exactly once,
    // and nobody saw a leave (placement closes extra tabs only).
    await barrier(c[0], c);
    for (const [i, x] of c.entries()) {
        for (const [j, y] of c.entries()) {
            assert.equal(presenceOf(x, 'join', y.user).length, j > i ? 1 : 0, `${x.user} saw ${y.user} join`);
            assert.equal(presenceOf(x, 'leave', y.user).length, 0, `${x.user} saw ${y.user} leave`);
        }
    }

    // A typing from u1 (A) reaches the three others, not u1 itself.
    await c[1].send({ type: 'typing' });
    for (const x of [c[0], c[2], c[3]]) {
        const ev = await x.next('typing', REPLY_MS);
        assert.deepEqual(ev, { type: 'typing', room, user: { id: 'u1', name: 'u1' } });
    }
    await barrier(c[1], c);
    assert.equal(presenceOf(c[1], 'typing', 'u1').length, 0, 'typing is not echoed to its sender');

    // A newcomer on B: all four see one join; its leave reaches all four.
    // Its name needs escaping in the events' JSON.
    const newcomer = 'New "comer" \\ é ☃';
    const n = await join(b, room, { sub: 'u4', name: newcomer });
    assert.deepEqual(ids(n.welcome.online), ['u0', 'u1', 'u2', 'u3', 'u4']);
    const about = (type, user) => (e) => e.type === type && e.user?.id === user;
    for (const x of c) assert.deepEqual(await x.next(about('join', 'u4'), REPLY_MS), { type: 'join', room, user: { id: 'u4', name: newcomer } });
    await n.close();
    for (const x of c) assert.deepEqual(await x.next(about('leave', 'u4'), REPLY_MS), { type: 'leave', room, user: { id: 'u4', name: newcomer } });
    await barrier(c[2], c);
    for (const x of c) {
        assert.equal(presenceOf(x, 'join', 'u4').length, 1);
        assert.equal(presenceOf(x, 'leave', 'u4').length, 1);
    }
});

test('join and leave once per user per room, however many tabs on however many hosts', async (t) => {
    const [a, b] = await startPair(t);
    const room = roomName('tabs');
    const P = a.prefix;
    const obs = await join(a, room, { sub: 'obs', name: 'Observer' });
    assert.deepEqual(obs.welcome.online, [{ id: 'obs', name: 'Observer' }]);

    const tab1 = await join(a, room, { sub: 'U', name: 'Ursula' });
    const tab2 = await join(b, room, { sub: 'U', name: 'Ursula' });
    assert.deepEqual(sorted(tab2.welcome.online.map((u) => `${u.id}:${u.name}`)), ['U:Ursula', 'obs:Observer'],
        'welcome.online on B lists the observer connected to A');
    await obs.next((e) => e.type === 'join' && e.user.id === 'U', REPLY_MS);
    await barrier(obs, [obs, tab1, tab2]);
    assert.equal(presenceOf(obs, 'join', 'U').length, 1, 'one join for two tabs');
    assert.equal(presenceOf(tab1, 'join', 'U').length + presenceOf(tab2, 'join', 'U').length, 0,
        'a user is not told about its own tabs');
    assert.equal(presenceOf(tab2, 'join', 'obs').length, 0, 'obs was there before tab2');

    assert.deepEqual(await smembers(`${P}online:${room}`), ['U', 'obs']);
    assert.deepEqual(await smembers(`${P}online`), ['U', 'obs']);
    assert.equal(await redisCli('HGET', `${P}user:U`, 'name'), 'Ursula');

    // The online-users endpoint gives the union on either instance.
    for (const srv of [a, b]) {
        const tok = srv.token({ sub: 'asker' });
        const r = await httpGet(srv, `/api/users?room=${room}`, { headers: auth(tok) });
        assert.equal(r.status, 200);
        assert.equal(r.json.room, room);
        assert.equal(r.json.count, 2);
        assert.deepEqual(sorted(r.json.users.map((u) => `${u.id}:${u.name}`)), ['U:Ursula', 'obs:Observer']);
        const all = await httpGet(srv, '/api/users', { headers: auth(tok) });
        assert.equal(all.status, 200);
        assert.equal(all.json.room, null);
        assert.deepEqual(ids(all.json.users), ['U', 'obs']);
    }

    // Closing tab 1 (A): U still has tab 2 (B): no leave, still online.
    await tab1.close();
    await waitFor(async () => (await redisCli('HGET', `${P}room_users:${room}`, 'U')) === '1', 5000, 50,
        'U down to one connection');
    await barrier(obs, [obs, tab2]);
    assert.equal(presenceOf(obs, 'leave', 'U').length, 0, 'no leave while a tab is open');
    assert.deepEqual(await smembers(`${P}online:${room}`), ['U', 'obs']);
    assert.deepEqual(await smembers(`${P}online`), ['U', 'obs']);

    // Closing tab 2 (B): exactly one leave, and U is gone from the sets.
    await tab2.close();
    assert.deepEqual(await obs.next('leave', REPLY_MS), { type: 'leave', room, user: { id: 'U', name: 'Ursula' } });
    await waitFor(async () => (await smembers(`${P}online:${room}`)).join() === 'obs', 5000, 50, 'U leaves the room set');
    await waitFor(async () => (await smembers(`${P}online`)).join() === 'obs', 5000, 50, 'U leaves the online set');
    assert.equal(await redisCli('EXISTS', `${P}user:U`), '0');
    await barrier(obs, [obs]);
    assert.equal(presenceOf(obs, 'leave', 'U').length, 1, 'exactly one leave');
    for (const srv of [a, b]) {
        const r = await httpGet(srv, `/api/users?room=${room}`, { headers: auth(srv.token({ sub: 'asker' })) });
        assert.deepEqual(ids(r.json.users), ['obs']);
    }

    // A user in two rooms is in each room's set, and in `online` once.
    const room2 = roomName('tabs2');
    const r1 = await join(b, room, { sub: 'V' });
    const r2 = await join(a, room2, { sub: 'V' });
    await waitFor(async () => (await smembers(`${P}online:${room2}`)).join() === 'V', 5000, 50, 'V in room2');
    assert.deepEqual(await smembers(`${P}online:${room}`), ['V', 'obs']);
    await r1.close();
    assert.deepEqual(await obs.next('leave', REPLY_MS), { type: 'leave', room, user: { id: 'V', name: 'V' } });
    await waitFor(async () => (await smembers(`${P}online:${room}`)).join() === 'obs', 5000, 50, 'V leaves room');
    assert.deepEqual(await smembers(`${P}online`), ['V', 'obs'], 'V is still online in room2');
    await r2.close();
    await waitFor(async () => (await smembers(`${P}online`)).join() === 'obs', 5000, 50, 'V offline');
});

test('typing reaches the room but not its sender connection; one per second per connection', async (t) => {
    const [a, b] = await startPair(t);
    const room = roomName('typing');
    // The sender S on A's worker 0, with another tab on the same worker and
    // one on B; others on every worker, one beside the sender.
    const s1 = await join(a, room, { sub: 'S', name: 'Sam' }, { worker: 0 });
    const s2 = await join(a, room, { sub: 'S', name: 'Sam' }, { worker: 0 });
    const s3 = await join(b, room, { sub: 'S', name: 'Sam' });
    const o1 = await join(a, room, { sub: 'o1' }, { worker: 0 });
    const o2 = await join(a, room, { sub: 'o2' }, { worker: 1 });
    const o3 = await join(b, room, { sub: 'o3' }, { worker: 0 });
    const o4 = await join(b, room, { sub: 'o4' }, { worker: 1 });
    const viewer = await join(b, room, { sub: 'v', role: 'viewer' });
    const all = [s1, s2, s3, o1, o2, o3, o4, viewer];
    assert.equal(workerOf(s1), workerOf(s2));
    assert.equal(workerOf(s1), workerOf(o1));

    for (let i = 0; i < 5; i++) await s1.send({ type: 'typing' });
    // The viewer's typing is dropped silently.
    await viewer.send({ type: 'typing' });
    // The barrier is posted by s1 after its typing: on s1's worker's Redis
    // link the typing goes first, so every client has it by the barrier.
    await barrier(s1, all);
    const want = { type: 'typing', room, user: { id: 'S', name: 'Sam' } };
    for (const x of [s2, s3, o1, o2, o3, o4, viewer]) {
        const got = presenceOf(x, 'typing', 'S');
        assert.equal(got.length, 1, `${x.user} (${workerOf(x)}) got ${got.length} typing events`);
        assert.deepEqual(got[0], want);
    }
    assert.equal(presenceOf(s1, 'typing', 'S').length, 0, 'not echoed to the sending connection');
    for (const x of all) assert.equal(presenceOf(x, 'typing', 'v').length, 0, 'viewer typing dropped');
    for (const x of all) assert.equal(x.received.filter((e) => e.type === 'error').length, 0, 'typing gets no reply');

    // Another connection's typing is its own: o3 (B) types, s1 gets it.
    await o3.send({ type: 'typing' });
    await barrier(o3, all);
    for (const x of [s1, s2, s3, o1, o2, o4, viewer]) assert.equal(presenceOf(x, 'typing', 'o3').length, 1);
    assert.equal(presenceOf(o3, 'typing', 'o3').length, 0);
});

test('kill -9 of a worker: its users leave at once when the slot restarts', async (t) => {
    // A long TTL: only the hand-over to the restarted worker can be quick.
    const [a, b] = await startPair(t, { CHAT_PRESENCE_TTL_S: 120 });
    const room = roomName('wkill');
    const P = a.prefix;
    const obs = await join(b, room, { sub: 'obs' });
    const v1 = await join(a, room, { sub: 'v1' }, { worker: 0 });
    const v2 = await join(a, room, { sub: 'v2' }, { worker: 0 });
    const m1 = await join(a, room, { sub: 'm' }, { worker: 0 });   // m has a tab
    const m2 = await join(a, room, { sub: 'm' }, { worker: 1 });   // on each worker
    const s = await join(a, room, { sub: 's' }, { worker: 1 });
    const pid = serverPidOf(a, v1);
    assert.equal(serverPidOf(a, v2), pid);
    assert.equal(serverPidOf(a, m1), pid);
    assert.notEqual(serverPidOf(a, s), pid);
    assert.ok(a.children().includes(pid));
    await barrier(s, [obs, m2, s]);
    assert.deepEqual(await smembers(`${P}online:${room}`), ['m', 'obs', 's', 'v1', 'v2']);

    process.kill(pid, 'SIGKILL');
    for (const c of [v1, v2, m1]) await c.waitClose(10000);
    // Its slot restarts; the new worker reaps the dead one's records (the
    // janitors would take 72 s or more).
    await waitFor(() => a.children().length === 2 && !a.children().includes(pid), 10000, 50, 'slot restarted');
    await waitFor(async () => (await smembers(`${P}online:${room}`)).join() === 'm,obs,s', 8000, 50,
        'v1 and v2 leave the room set after the restart');
    assert.deepEqual(await smembers(`${P}online`), ['m', 'obs', 's']);
    for (const u of ['v1', 'v2']) {
        const ev = await obs.next((e) => e.type === 'leave' && e.user.id === u, REPLY_MS);
        assert.deepEqual(ev, { type: 'leave', room, user: { id: u, name: u } });
    }
    await barrier(s, [obs, m2, s]);
    for (const u of ['v1', 'v2']) assert.equal(presenceOf(obs, 'leave', u).length, 1, `one leave for ${u}`);
    assert.equal(presenceOf(obs, 'leave', 'm').length, 0, 'm still has a tab');
    assert.equal(presenceOf(obs, 'leave', 's').length, 0);
    assert.equal(await redisCli('HGET', `${P}room_users:${room}`, 'm'), '1');

    // The restarted worker serves: v1 comes back and is announced again.
    const back = await join(a, room, { sub: 'v1' });
    assert.deepEqual(ids(back.welcome.online), ['m', 'obs', 's', 'v1']);
    assert.deepEqual(await obs.next((e) => e.type === 'join' && e.user.id === 'v1', REPLY_MS),
        { type: 'join', room, user: { id: 'v1', name: 'v1' } });
});

test('kill -9 of a whole instance: the other clears its users within the presence TTL', async (t) => {
    const ttl = 3;
    const [a, b] = await startPair(t, { CHAT_PRESENCE_TTL_S: ttl });
    const room = roomName('hkill');
    const room2 = roomName('hkill2');
    const P = a.prefix;
    const obs1 = await join(b, room, { sub: 'obs1' }, { worker: 0 });
    const obs2 = await join(b, room, { sub: 'obs2' }, { worker: 1 });
    const obs3 = await join(b, room2, { sub: 'obs3' });
    await join(a, room, { sub: 'a1' }, { worker: 0 });
    await join(a, room2, { sub: 'a1' }, { worker: 1 });      // a1 in two rooms
    await join(a, room, { sub: 'a2' }, { worker: 1 });
    await join(a, room, { sub: 'a2' }, { worker: 0 });       // a2: two tabs on A
    await join(a, room, { sub: 'mixed' });
    const mixedB = await join(b, room, { sub: 'mixed' });    // and one on B
    await barrier(obs1, [obs1, obs2, mixedB]);
    await barrier(obs3, [obs3]);
    assert.deepEqual(await smembers(`${P}online:${room}`), ['a1', 'a2', 'mixed', 'obs1', 'obs2']);
    assert.deepEqual(await smembers(`${P}online:${room2}`), ['a1', 'obs3']);

    a.killAll('SIGKILL');
    await a.waitExit(5000);
    // Reaped within 0.85 ttl of the last heartbeat; generous margin.
    const bound = ttl * 1000 + 7000;
    await waitFor(async () => (await smembers(`${P}online:${room}`)).join() === 'mixed,obs1,obs2', bound, 100,
        'a1 and a2 leave the room set');
    await waitFor(async () => (await smembers(`${P}online:${room2}`)).join() === 'obs3', 2000, 100, 'a1 leaves room2');
    assert.deepEqual(await smembers(`${P}online`), ['mixed', 'obs1', 'obs2', 'obs3']);
    assert.equal(await redisCli('HGET', `${P}room_users:${room}`, 'mixed'), '1');
    for (const o of [obs1, obs2, mixedB]) {
        for (const u of ['a1', 'a2']) await o.next((e) => e.type === 'leave' && e.user.id === u, 5000);
    }
    await obs3.next((e) => e.type === 'leave' && e.user.id === 'a1', 5000);
    // Both of B's workers run a janitor; each dead record is reaped once.
    await barrier(obs1, [obs1, obs2, mixedB]);
    await barrier(obs3, [obs3]);
    for (const o of [obs1, obs2, mixedB]) {
        assert.equal(presenceOf(o, 'leave', 'a1', room).length, 1, `${o.user}: one leave for a1`);
        assert.equal(presenceOf(o, 'leave', 'a2', room).length, 1, `${o.user}: one leave for a2 (two tabs)`);
        assert.equal(presenceOf(o, 'leave', 'mixed').length, 0, `${o.user}: mixed still has a tab on B`);
    }
    assert.equal(presenceOf(obs3, 'leave', 'a1', room2).length, 1, 'one leave for a1 in room2');
    assert.equal(presenceOf(obs3, 'leave', 'a2').length, 0, 'a2 was never in room2');
    for (const o of [obs1, obs2, obs3]) assert.equal(o.readyState, 1, 'B kept its connections');
});

test('a stalled worker reaped as dead restores its users when it resumes', async (t) => {
    const ttl = 3;
    const [a, b] = await startPair(t, { CHAT_PRESENCE_TTL_S: ttl });
    const room = roomName('stall');
    const P = a.prefix;
    const obs = await join(b, room, { sub: 'obs' });
    const z = await join(a, room, { sub: 'z' }, { worker: 0 });
    const pid = serverPidOf(a, z);
    await obs.next((e) => e.type === 'join' && e.user.id === 'z', REPLY_MS);
    // Stopped for longer than its heartbeat lives, it looks dead: the
    // other instance's janitor reaps it (a leave, as for a crash).
    process.kill(pid, 'SIGSTOP');
    try {
        await waitFor(async () => !(await smembers(`${P}online:${room}`)).includes('z'), ttl * 1000 + 7000, 100,
            'the stopped worker is reaped');
        await obs.next((e) => e.type === 'leave' && e.user.id === 'z', REPLY_MS);
    } finally {
        process.kill(pid, 'SIGCONT');
    }
    // It was not dead: z is still connected, so presence must come back.
    await waitFor(async () => (await smembers(`${P}online:${room}`)).includes('z'), ttl * 1000 + 5000, 100,
        'z is online again once its worker resumed');
    assert.ok((await smembers(`${P}online`)).includes('z'));
    assert.deepEqual(await obs.next((e) => e.type === 'join' && e.user.id === 'z', REPLY_MS),
        { type: 'join', room, user: { id: 'z', name: 'z' } });
    await barrier(z, [z, obs]);
    assert.equal(z.readyState, 1);
    await z.close();
    await obs.next((e) => e.type === 'leave' && e.user.id === 'z', REPLY_MS);
    await waitFor(async () => !(await smembers(`${P}online:${room}`)).includes('z'), 5000, 50, 'z gone after closing');
});

// -------------------------------------------------------------- catching up

/** The room's messages as a client applying events in order sees them: id -> text. */
function applyEvents(events, view = new Map()) {
    for (const e of events) {
        if (e.type === 'message' || e.type === 'edit') view.set(e.id, e.text);
        else if (e.type === 'delete') view.delete(e.id);
    }
    return view;
}
const viewList = (view) => [...view.entries()].sort((x, y) => x[0] - y[0]).map(([id, text]) => `${id}|${text}`);

async function dbView(room) {
    const out = await psql(`SELECT id, body FROM messages WHERE room = '${room}' AND deleted_at IS NULL ORDER BY id`);
    return out ? out.split('\n') : [];
}

/**
 * Sends messages, edits (of its newest and its oldest message) and deletes
 * (of its oldest and its newest) until stop.v; every request must be acked.
 * So after a reconnect some messages were created and changed since, some
 * changed twice, some created before and changed since.
 */
async function writer(c, stop, log) {
    const mine = [];
    for (let i = 1; !stop.v; i++) {
        let req;
        if (i % 4 === 2 && mine.length) req = { type: 'edit', id: mine[mine.length - 1], text: `${c.user} edit newest ${i}` };
        else if (i % 6 === 3 && mine.length) req = { type: 'edit', id: mine[0], text: `${c.user} edit oldest ${i}` };
        else if (i % 5 === 4 && mine.length > 2) req = { type: 'delete', id: mine.shift() };
        else if (i % 9 === 8 && mine.length > 1) req = { type: 'delete', id: mine.pop() };
        else req = { type: 'message', text: `${c.user} says ${i}` };
        const r = await request(c, { ...req, ref: `${c.user}-${i}` });
        assert.equal(r.type, 'ack', `${c.user} ${JSON.stringify(req)}: ${JSON.stringify(r)}`);
        if (req.type === 'message') mine.push(r.id);
        log.push(r);
        await new Promise((resolve) => setTimeout(resolve, 40));
    }
}

test('since: replay under concurrent sends, edits and deletes, checked change by change', async (t) => {
    const [a, b] = await startPair(t);
    const room = roomName('replay');
    const x = await join(b, room, { sub: 'x' });                // records everything live
    const y = await join(a, room, { sub: 'y' });                // will drop out midway
    const writers = [
        await join(a, room, { sub: 'w1' }, { worker: 0 }),
        await join(a, room, { sub: 'w2' }, { worker: 1 }),
        await join(b, room, { sub: 'w3' }),
    ];
    assert.equal(x.welcome.last_seq, 0);
    const changesOf = (c) => c.received.filter(isChange);
    const stop = { v: false };
    const acks = [];
    const running = writers.map((w) => writer(w, stop, acks));
    try {
        await waitFor(() => changesOf(x).length >= 15, 20000, 20, 'x saw 15 changes');
        // y drops out (no close handshake, as a network failure would).
        y.terminate();
        await y.waitClose(5000);
        const before = changesOf(y);
        const since = Math.max(...before.map((e) => e.seq));
        assert.deepEqual(before.map((e) => e.seq), Array.from({ length: since }, (_, i) => i + 1),
            'y saw 1..since in order before dropping out');
        await waitFor(() => changesOf(x).length >= since + 40, 30000, 20, 'x saw 40 more changes');
        // Back, on the other instance, while the writers keep going.
        const y2 = await join(b, room, { sub: 'y' }, { since });
        assert.ok(y2.welcome.last_seq >= since);
        const atReconnect = changesOf(x).length;
        await waitFor(() => changesOf(x).length >= atReconnect + 15, 30000, 20, 'x saw 15 more changes');
        stop.v = true;
        await Promise.all(running);

        const final = Number(await psql(`SELECT seq FROM rooms WHERE name = '${room}'`));
        assert.equal(final, Math.max(...acks.map((r) => r.seq)), 'the last ack is the room\'s last seq');
        await x.next((e) => isChange(e) && e.seq === final, REPLY_MS);
        await y2.next((e) => isChange(e) && e.seq === final, REPLY_MS);

        // x: every change, once, in order.
        const xs = changesOf(x);
        assert.deepEqual(xs.map((e) => e.seq), Array.from({ length: final }, (_, i) => i + 1), 'x: 1..final once each');
        const X = new Map(xs.map((e) => [e.seq, e]));

        // The message each change touched, and its state after each change.
        const created = new Map();  // id -> creation event
        for (const e of xs) if (e.type === 'message') created.set(e.id, e);
        const lastEditBefore = (id, seq) => {
            let at;
            for (const e of xs) if (e.id === id && e.type === 'edit' && e.seq <= seq) at = e.edited_at;
            return at;
        };
        // What a replay shows for message id whose latest change is seq.
        const rendition = (id, seq) => {
            const ch = X.get(seq);
            const m = created.get(id);
            if (ch.type === 'delete') return { type: 'delete', id, seq, room, deleted_at: ch.deleted_at };
            if (m.seq > since) {
                const ev = { type: 'message', id, seq, room, user: m.user, text: ch.text, created_at: m.created_at, ref: m.ref };
                const edited = lastEditBefore(id, seq);
                if (edited) ev.edited_at = edited;
                return ev;
            }
            return { type: 'edit', id, seq, room, user: m.user, text: ch.text, edited_at: ch.edited_at };
        };
        // Replays carry no ref on edits and deletes; otherwise the same.
        const norm = (e) => {
            const { ref, ...rest } = e;
            return e.type === 'message' ? e : rest;
        };
        const sameAsLive = (e) => {
            try {
                assert.deepEqual(norm(e), norm(X.get(e.seq)));
                return true;
            } catch {
                return false;
            }
        };

        // y2: after the welcome, nothing at or before since, strictly
        // increasing (so nothing twice, replay before live), up to final.
        const ys = changesOf(y2);
        assert.ok(ys.length > 0);
        for (const [i, e] of ys.entries()) {
            assert.ok(e.seq > since, `replayed seq ${e.seq} <= since ${since}`);
            if (i > 0) assert.ok(e.seq > ys[i - 1].seq, `seq ${e.seq} after ${ys[i - 1].seq}: repeated or out of order`);
            assert.equal(e.id, X.get(e.seq).id, `seq ${e.seq} is about message ${X.get(e.seq).id}`);
        }
        assert.equal(ys[ys.length - 1].seq, final);
        const idx = y2.received.indexOf(ys[0]);
        assert.ok(y2.received.slice(0, idx).every((e) => !isChange(e) && e.type !== 'resync'), 'no resync');

        // Split: the replay ends at the last event that skips a seq or
        // differs from the live event; the live stream after it is
        // contiguous and equal to what x got.
        let replayEnd = -1;
        let prev = since;
        for (const [i, e] of ys.entries()) {
            if (e.seq !== prev + 1 || !sameAsLive(e)) replayEnd = i;
            prev = e.seq;
        }
        const replay = ys.slice(0, replayEnd + 1);
        const upto = replayEnd >= 0 ? replay[replayEnd].seq : since;
        assert.equal(new Set(replay.map((e) => e.id)).size, replay.length, 'one replay event per message');
        for (const e of replay) {
            assert.deepEqual(e, rendition(e.id, e.seq), `replay of message ${e.id} at seq ${e.seq}`);
            const later = xs.filter((c) => c.id === e.id && c.seq > e.seq && c.seq <= upto);
            assert.deepEqual(later.map((c) => c.seq), [], `replay of ${e.id} at ${e.seq} is its latest change`);
        }
        // Every change after since is in the stream or folded into a later
        // event of the same message (a replay event: the tail of the
        // replay may look exactly like live events).
        const inStream = new Set(ys.map((e) => e.seq));
        for (let s = since + 1; s <= final; s++) {
            if (inStream.has(s)) continue;
            assert.ok(s < upto, `change ${s} missing from the live stream`);
            const id = X.get(s).id;
            assert.ok(ys.some((e) => e.id === id && e.seq > s), `change ${s} (message ${id}) neither replayed nor folded`);
        }

        // Views: y (before + after), x and the database agree.
        const yView = viewList(applyEvents(ys, applyEvents(before)));
        const xView = viewList(applyEvents(xs));
        const db = await dbView(room);
        assert.deepEqual(xView, db, 'x\'s view is the database');
        assert.deepEqual(yView, db, 'y\'s view is the database');
        assert.ok(acks.some((r) => r.op === 'edit') && acks.some((r) => r.op === 'delete'), 'edits and deletes happened');
        t.diagnostic(`since=${since} final=${final} replay=${replay.length} events up to ${upto}, live=${ys.length - replay.length}`);
    } finally {
        stop.v = true;
        await Promise.allSettled(running);
    }
});

test('since: resync when since is ahead of the room, none when equal', async (t) => {
    const [a, b] = await startPair(t);
    const room = roomName('ahead');
    const w = await join(a, room, { sub: 'w' });
    for (let i = 1; i <= 3; i++) await post(w, `m${i}`);
    const ahead = await join(b, room, { sub: 'r' }, { since: 10 });
    assert.equal(ahead.welcome.last_seq, 3);
    assert.deepEqual(await ahead.next(undefined, REPLY_MS), { type: 'resync', last_seq: 3 });
    const equal = await join(b, room, { sub: 'r2' }, { since: 3 });
    const behind = await join(b, room, { sub: 'r3' }, { since: 2 });
    const ack = await post(w, 'm4');
    // The live stream follows the resync.
    const live = await ahead.next('message', REPLY_MS);
    assert.equal(live.seq, ack.seq);
    const first = await equal.next((e) => e.type !== 'join', REPLY_MS);
    assert.equal(first.type, 'message', `since = last_seq: no replay, no resync (${JSON.stringify(first)})`);
    assert.equal(first.seq, 4);
    const got = [await behind.next('message', REPLY_MS), await behind.next('message', REPLY_MS)];
    assert.deepEqual(got.map((e) => [e.seq, e.text]), [[3, 'm3'], [4, 'm4']]);
    for (const c of [ahead, equal, behind]) assert.equal(c.received.filter((e) => e.type === 'resync').length, c === ahead ? 1 : 0);
});

test('since: more than replay_max changed messages -> resync', async (t) => {
    const [a, b] = await startPair(t, { CHAT_REPLAY_MAX: 5 });
    const room = roomName('rmax');
    const w = await join(a, room, { sub: 'w' });
    const posted = [];
    for (let i = 1; i <= 7; i++) posted.push(await post(w, `m${i}`));
    // Two edits of message 3: changes 8 and 9, still one changed message.
    for (const n of [1, 2]) {
        const r = await request(w, { type: 'edit', id: posted[2].id, text: `m3 edit ${n}` });
        assert.equal(r.type, 'ack');
    }
    // since=2: messages 3..7 changed, five: replayed in seq order.
    const five = await join(b, room, { sub: 'r' }, { since: 2 });
    const ev = [];
    for (let i = 0; i < 5; i++) ev.push(await five.next(isChange, REPLY_MS));
    assert.deepEqual(ev.map((e) => [e.type, e.seq, e.text]),
        [['message', 4, 'm4'], ['message', 5, 'm5'], ['message', 6, 'm6'], ['message', 7, 'm7'], ['message', 9, 'm3 edit 2']]);
    assert.equal(five.received.filter((e) => e.type === 'resync').length, 0);
    // since=1 (six messages) and since=0 (seven): resync with the room's seq.
    for (const since of [1, 0]) {
        const c = await join(b, room, { sub: `r${since}` }, { since });
        assert.deepEqual(await c.next((e) => e.type !== 'join', REPLY_MS), { type: 'resync', last_seq: 9 });
    }
});

test('since: a replay over max_outbuf_bytes reaches a client that reads it, however late', async (t) => {
    // replay_max messages of 2,000 four-byte characters: a replay of 8 MB,
    // more than the kernel's buffers take while the client does not read,
    // against a 64 KiB output limit. Queued at once it made a reading
    // client a slow consumer (1013), and its reconnect with the same since
    // met the same replay. It is sent as the connection drains.
    const srv = await startChatd({ t, env: { CHAT_MAX_OUTBUF_BYTES: 65536 } });
    const room = roomName('bigreplay');
    const n = 1000;
    const big = '\u{1F600}'.repeat(2000);
    await psql(`SELECT count(*) FROM chat_post_batch((SELECT json_agg(json_build_array('${room}', 'w', 'W',
        g || ':' || '${big}', 'big-' || g)) FROM generate_series(1, ${n}) g))`);
    // Not read at first: the kernel's buffers fill, and the server waits
    // for them to drain.
    const r = await openWs(srv.wsUrl(`/api/chat?room=${room}&since=0`), { token: srv.token({ sub: 'r' }), expectWelcome: false });
    r.socket.pause();
    await new Promise((resolve) => setTimeout(resolve, 700));
    r.socket.resume();
    assert.equal((await r.next('welcome', REPLY_MS)).last_seq, n);
    const got = [];
    for (let i = 0; i < n; i++) got.push(await r.next(isChange, REPLY_MS));
    assert.deepEqual(got.map((e) => e.seq), Array.from({ length: n }, (_, i) => i + 1));
    assert.ok(got.every((e, i) => e.text === `${i + 1}:${big}`));
    // Then the live stream, on the same connection.
    const w = await join(srv, room, { sub: 'w' });
    const ack = await post(w, 'live');
    assert.equal((await r.next('message', REPLY_MS)).seq, ack.seq);
    assert.equal(r.closeInfo, null);
    await Promise.all([w.close(), r.close()]);
});

// ------------------------------------------------------------ lost publishes

test('dropped PUBLISHes are repaired from PostgreSQL: all 12, in order, once', async (t) => {
    const [a, b] = await startPair(t, { CHAT_TEST_DROP_PUBLISH_EVERY: 3 });
    const room = roomName('drop');
    const c = [
        await join(a, room, { sub: 'd0' }, { worker: 0 }),
        await join(a, room, { sub: 'd1' }, { worker: 1 }),
        await join(b, room, { sub: 'd2' }, { worker: 0 }),
        await join(b, room, { sub: 'd3' }, { worker: 1 }),
    ];
    assert.equal(new Set(c.map(workerOf)).size, 4);
    // Each worker drops its own 3rd, 6th, ... PUBLISH. Posting alternately
    // from A's worker 0 and B's worker 0, messages 5 and 6 (0-based 4, 5)
    // are lost mid-stream, found when 7 arrives; 11 and 12 are lost at the
    // end, where no later change reveals them: they are posted only once
    // everyone has the first ten, so only a check of the room's position
    // can find them.
    const acks = [];
    const seqsOf = (x) => x.received.filter((e) => e.type === 'message').map((e) => e.seq);
    const allHave = (n) => waitFor(() => c.every((x) => seqsOf(x).length >= n), 10000, 20, `every client got ${n} messages`)
        .catch((e) => assert.fail(`${e.message}; acked seqs ${acks.map((k) => k.seq)}, got ${c.map((x) => `${x.user}: ${seqsOf(x)}`).join('; ')}`));
    for (let i = 0; i < 10; i++) acks.push(await post(c[i % 2 === 0 ? 0 : 2], `drop ${i}`));
    await allHave(10);
    for (let i = 10; i < 12; i++) acks.push(await post(c[i % 2 === 0 ? 0 : 2], `drop ${i}`));
    await allHave(12);
    const want = acks.map((k) => k.seq);
    for (const x of c) {
        const got = x.received.filter((e) => e.type === 'message');
        assert.deepEqual(got.map((e) => e.seq), want, `${x.user}: every message once, in seq order`);
        assert.deepEqual(got.map((e) => e.text), acks.map((_, i) => `drop ${i}`));
    }
    const metric = (text, name) => text.split('\n').filter((l) => l.startsWith(name))
        .reduce((s, l) => s + Number(l.split(' ').pop()), 0);
    let dropped = 0;
    let repairs = 0;
    for (const srv of [a, b]) {
        const m = await httpGet(srv, '/metrics');
        dropped += metric(m.body, 'chatd_publish_dropped_total');
        repairs += metric(m.body, 'chatd_gap_repairs_total');
    }
    assert.ok(dropped > 0, 'some PUBLISHes were dropped');
    assert.ok(repairs > 0, 'gaps were repaired');
});

// ------------------------------------------------------------ control channel

test('kick and notice on the control channel reach both instances', async (t) => {
    const [a, b] = await startPair(t);
    const room = roomName('ctl');
    const other = roomName('ctl2');
    const P = a.prefix;
    const u = [
        await join(a, room, { sub: 'U' }, { worker: 0 }),
        await join(a, room, { sub: 'U' }, { worker: 1 }),
        await join(b, room, { sub: 'U' }, { worker: 0 }),
        await join(b, room, { sub: 'U' }, { worker: 1 }),
        await join(b, other, { sub: 'U' }),
    ];
    const va = await join(a, room, { sub: 'V' });
    const vb = await join(b, room, { sub: 'V' });
    const wb = await join(b, other, { sub: 'W' });
    const k = [await join(a, room, { sub: 'K' }), await join(b, other, { sub: 'K' })];

    assert.equal(await redisCli('PUBLISH', `${P}control`, JSON.stringify({ op: 'kick', user: 'U' })), '4');
    for (const c of u) assert.equal((await c.waitClose(3000)).code, 4003);
    await vb.next((e) => e.type === 'leave' && e.user.id === 'U', REPLY_MS);
    await barrier(va, [va, vb, k[0]]);
    await barrier(wb, [wb, k[1]]);
    for (const c of [va, vb, wb, ...k]) assert.equal(c.readyState, 1, `${c.user} stays connected`);
    await waitFor(async () => !(await smembers(`${P}online`)).includes('U'), 5000, 50, 'U offline');

    // Through chatctl: every connection of K, in either room, on either host.
    const r = await chatctl(a, ['kick', 'K']);
    assert.equal(r.code, 0, r.stderr);
    for (const c of k) assert.equal((await c.waitClose(3000)).code, 4003);
    await barrier(va, [va, vb]);
    assert.equal(va.readyState, 1);

    // A notice reaches every connection in its room, and only there.
    assert.equal(await redisCli('PUBLISH', `${P}control`, JSON.stringify({ op: 'notice', room, text: 'hi' })), '4');
    for (const c of [va, vb]) assert.deepEqual(await c.next('notice', REPLY_MS), { type: 'notice', room, text: 'hi' });
    // Control messages reach a worker in order: once wb has the second
    // notice, the first has been handled on its worker.
    await redisCli('PUBLISH', `${P}control`, JSON.stringify({ op: 'notice', room: other, text: 'second' }));
    assert.deepEqual(await wb.next('notice', REPLY_MS), { type: 'notice', room: other, text: 'second' });
    assert.equal(wb.received.filter((e) => e.type === 'notice').length, 1);

    const text = 'Maintenance at 18:00 \u2713 "quoted" \\ done';
    const n = await chatctl(b, ['notice', room, text]);
    assert.equal(n.code, 0, n.stderr);
    for (const c of [va, vb]) assert.deepEqual(await c.next('notice', REPLY_MS), { type: 'notice', room, text });
    // The longest notice, all of it escaped on the wire (up to six bytes each).
    const longest = '"\\\n\u0001'.repeat(2048);
    assert.equal(Buffer.byteLength(longest), 8192);
    const l = await chatctl(b, ['notice', room, longest]);
    assert.equal(l.code, 0, l.stderr);
    for (const c of [va, vb]) assert.deepEqual(await c.next('notice', REPLY_MS), { type: 'notice', room, text: longest });
});

test('chatctl: online, ban, unban, notice, token, bad usage', async (t) => {
    const [a, b] = await startPair(t);
    const room = roomName('ctl');
    const P = a.prefix;
    const alice = await join(a, room, { sub: 'alice', name: 'Alice A' });
    const bob = [await join(b, room, { sub: 'bob' }), await join(a, room, { sub: 'bob' })];
    const carl = await join(b, roomName('elsewhere'), { sub: 'carl', name: 'Carl' });

    const lines = (out) => sorted(out.split('\n').filter(Boolean));
    let r = await chatctl(a, ['online', room]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines(r.stdout), ['alice\tAlice A', 'bob\tbob']);
    r = await chatctl(b, ['online']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines(r.stdout), ['alice\tAlice A', 'bob\tbob', 'carl\tCarl']);
    r = await chatctl(a, ['online', roomName('empty')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');

    // ban: in the set, every socket of bob closed with 4003, upgrades refused.
    r = await chatctl(a, ['ban', 'bob']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await redisCli('SISMEMBER', `${P}banned`, 'bob'), '1');
    for (const c of bob) assert.equal((await c.waitClose(3000)).code, 4003);
    for (const srv of [a, b]) {
        const res = await expectHttpError(srv.wsUrl(`/api/chat?room=${room}`), auth(srv.token({ sub: 'bob' })));
        assert.equal(res.status, 403);
        assert.equal(res.json.error.code, 'forbidden');
    }
    assert.equal(alice.readyState, 1);
    await alice.next((e) => e.type === 'leave' && e.user.id === 'bob', REPLY_MS);

    // unban: bob may come back.
    r = await chatctl(b, ['unban', 'bob']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await redisCli('SISMEMBER', `${P}banned`, 'bob'), '0');
    const again = await join(b, room, { sub: 'bob' });
    assert.equal(again.welcome.user.id, 'bob');

    // notice
    r = await chatctl(a, ['notice', room, 'hello all']);
    assert.equal(r.code, 0, r.stderr);
    for (const c of [alice, again]) assert.deepEqual(await c.next('notice', REPLY_MS), { type: 'notice', room, text: 'hello all' });

    // token: accepted by both instances, with the claims asked for.
    r = await chatctl(a, ['token', '--sub', 'dora', '--name', 'Dora D']);
    assert.equal(r.code, 0, r.stderr);
    const tok = r.stdout.trim();
    assert.equal(decodeToken(tok, a.secret).valid, true);
    for (const srv of [a, b]) {
        const c = await openWs(srv.wsUrl(`/api/chat?room=${room}`), { token: tok });
        assert.deepEqual(c.welcome.user, { id: 'dora', name: 'Dora D', role: 'member' });
        await c.close();
    }
    r = await chatctl(b, ['token', '--sub', 'vic', '--role', 'viewer', '--rooms', `${room},x`, '--ttl', '600']);
    assert.equal(r.code, 0, r.stderr);
    const vtok = r.stdout.trim();
    const claims = decodeToken(vtok, a.secret).payload;
    assert.ok(Math.abs(claims.exp - (Math.floor(Date.now() / 1000) + 600)) <= 5);
    const v = await openWs(b.wsUrl(`/api/chat?room=${room}`), { token: vtok });
    assert.equal(v.welcome.user.role, 'viewer');
    const denied = await expectHttpError(a.wsUrl('/api/chat?room=notlisted'), auth(vtok));
    assert.equal(denied.status, 403);

    // Bad usage: exit 2, one line on stderr, nothing done.
    for (const args of [[], ['frobnicate'], ['kick'], ['ban'], ['kick', 'a', 'b'], ['notice', room], ['token'],
        ['token', '--name', 'x'], ['token', '--sub', 'x', '--role', 'admin'], ['online', 'bad room'],
        ['token', '--sub', 'x', '--ttl', 'soon'], ['token', '--sub'], ['token', '--sub', 'x', '--bogus'],
        ['token', '--sub', 'x', 'extra'], ['--bogus', 'online'], ['notice', room, 'n'.repeat(8193)],
        ['token', '--sub', ''], ['token', '--sub', 's'.repeat(65)], ['token', '--sub', 'x', '--name', ''],
        ['token', '--sub', 'x', '--name', 'n'.repeat(65)], ['-c', '/nonexistent/chatd.conf', 'frobnicate']]) {
        const res = await chatctl(a, args);
        assert.equal(res.code, 2, `chatctl ${args.join(' ')}: exit ${res.code} (${res.stderr})`);
        const errLines = res.stderr.split('\n').filter(Boolean);
        assert.equal(errLines.length, 1, `chatctl ${args.join(' ')}: stderr ${JSON.stringify(res.stderr)}`);
        assert.equal(res.stdout, '', `chatctl ${args.join(' ')}: stdout ${JSON.stringify(res.stdout)}`);
    }
    // The bad name itself is quoted back (it once pointed into freed memory).
    r = await chatctl(a, ['token', '--sub', 'x', '--rooms', 'bad%,ok']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, "chatctl: --rooms: bad room name 'bad%' (try chatctl --help)\n");
    // The longest notice still goes out.
    r = await chatctl(a, ['notice', room, 'n'.repeat(8192)]);
    assert.equal(r.code, 0, r.stderr);
    // A failure is one line too, even when libpq says more.
    r = await chatctl(a, ['migrate'], { CHAT_PG_DSN: 'postgresql://chat@127.0.0.1:1/chat' });
    assert.equal(r.code, 1);
    assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, JSON.stringify(r.stderr));
    assert.match(r.stderr, /^chatctl: migrate: /);
});
