// Overload.
//
// 1. A connection flood at an instance whose workers may hold 300
//    descriptors (prlimit --nofile=300:300 around chatd), past that limit
//    and past the listen backlogs (two SO_REUSEPORT sockets of 4096): the
//    workers close their oldest idle connections to take new ones (and
//    shed what they cannot hold) instead of dying or spinning, a new client
//    gets in during the flood, the clients already connected keep
//    exchanging messages throughout (counted: acks and deliveries go on
//    during the flood), and once the flood ends new connections succeed
//    again. Nothing acked is lost.
// 2. max_conns_per_ip = 10 with 2 workers: once 10 connections from
//    127.0.0.1 are open, more from there get HTTP 429; 127.0.0.2 is not
//    affected; closing some lets 127.0.0.1 in again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ROOT, httpGet, openWs, sleep, startChatd, waitFor } from '../lib/harness.mjs';
import { BASE_ENV, ChatClient, finalCheck, openClients, rnd, runTraffic, startPair, stopServers } from './traffic.mjs';

const NOFILE = 300;

/** Our own soft descriptor limit. */
function ownNofile() {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    return !m || m[1] === 'unlimited' ? 1 << 20 : Number(m[1]);
}

/**
 * Opens n raw TCP connections that send nothing, batch by batch; each ends
 * up connected (held), closed by the server, reset, or not connected
 * within connectMs (its SYN dropped: the backlog is full).
 */
async function flood(port, n, { batch = 500, connectMs = 3000 } = {}) {
    const socks = [];
    const st = { connected: 0, closedByServer: 0, reset: 0, notConnected: 0, errors: 0 };
    for (let i = 0; i < n; i += batch) {
        const wave = [];
        for (let j = i; j < Math.min(n, i + batch); j++) {
            wave.push(new Promise((resolve) => {
                const s = net.connect({ host: '127.0.0.1', port });
                s.state = 'connecting';
                socks.push(s);
                const timer = setTimeout(() => {
                    if (s.state === 'connecting') {
                        s.state = 'timeout';
                        st.notConnected++;
                        s.destroy();
                    }
                    resolve();
                }, connectMs);
                s.on('connect', () => {
                    s.state = 'open';
                    st.connected++;
                    clearTimeout(timer);
                    resolve();
                });
                s.on('data', () => {});
                s.on('error', (e) => {
                    if (e.code === 'ECONNRESET') st.reset++;
                    else st.errors++;
                });
                s.on('close', () => {
                    if (s.state === 'open') st.closedByServer++;
                    if (s.state !== 'timeout') s.state = 'closed';
                    clearTimeout(timer);
                    resolve();
                });
            }));
        }
        await Promise.all(wave);
    }
    return {
        st,
        get open() { return socks.filter((s) => s.state === 'open').length; },
        end() {
            for (const s of socks) {
                s.state = 'ended';
                s.destroy();
            }
        },
    };
}

test('connection flood past the descriptor limit and the backlog: existing clients keep going', async (t) => {
    const [a, b] = await startPair(t, {
        // prlimit sets the limit and execs chatd (same pid); CHATD_BIN as the harness.
        opts: { bin: '/usr/bin/prlimit', args: [`--nofile=${NOFILE}:${NOFILE}`, '--',
            process.env.CHATD_BIN ?? path.join(ROOT, 'bin/chatd')] },
    });
    const limits = fs.readFileSync(`/proc/${a.children()[0]}/limits`, 'utf8');
    assert.match(limits, new RegExp(`Max open files\\s+${NOFILE}\\s+${NOFILE}`));
    const rooms = [`ov-${rnd()}`, `ov-${rnd()}`];
    const clients = await openClients(t, rooms, 12, [a, b], a.secret);
    const onA = clients.filter((c) => c.server === a);
    const traffic = runTraffic(clients, { periodMs: 250, rooms, servers: [a, b], secret: a.secret });
    // Past both backlogs and the workers' descriptors, within ours.
    const n = Math.min(9000, ownNofile() - 2000);
    let fl;
    try {
        await sleep(1500);
        fl = await flood(a.port, n);
        t.after(() => fl.end());
        // The flood holds: the workers are at their limit now.
        await waitFor(() => /accept: Too many open files; closed [1-9]\d* idle HTTP connections/.test(a.logs()),
            10000, 100, 'EMFILE reached, idle connections closed for new ones, and logged');
        // Served throughout: clients on A get acks and deliveries during the flood.
        const count = () => onA.reduce((k, c) => k + c.acked.size + c.changeSeqs.length, 0);
        const before = count();
        await waitFor(() => count() > before + 100, 20000, 100, 'clients on A served during the flood');
        // While the idle connections still hold A's descriptors, a new
        // client gets in: the oldest idle ones make room for it. B, not
        // flooded, answers as ever.
        assert.ok(fl.open > NOFILE, `the flood holds ${fl.open} connections`);
        await waitFor(async () => (await httpGet(a.port, '/healthz', { timeoutMs: 2000 })).status === 200,
            10000, 200, '/healthz on A answers during the flood');
        assert.equal((await httpGet(b.port, '/healthz')).status, 200);
        await sleep(1000);
    } finally {
        fl?.end();
        await traffic.stop();
    }
    t.diagnostic(`flood of ${n}: ${JSON.stringify(fl.st)}`);
    assert.ok(fl.st.closedByServer > 0, 'no flood connection was shed');
    assert.ok(!/worker died/.test(a.logs()), 'a worker died');
    // After the flood: new connections succeed again (bounded).
    await waitFor(async () => (await httpGet(a.port, '/healthz', { timeoutMs: 2000 })).status === 200,
        20000, 200, '/healthz on A answers again');
    const late = new ChatClient({ room: rooms[0], servers: [a], secret: a.secret });
    clients.push(late);
    await late.start(20000);
    late.sendMessage('after the flood');
    await finalCheck(t, { prefix: a.prefix, clients, rooms });
    await Promise.all(clients.map((c) => c.stop()));
    await stopServers([a, b]);
});

test('max_conns_per_ip: 429 past 10 from one address, another address unaffected', async (t) => {
    const srv = await startChatd({ t, workers: 2, env: { ...BASE_ENV, CHAT_MAX_CONNS_PER_IP: 10 } });
    const room = `ip-${rnd()}`;
    const tok = srv.token({ sub: 'ipuser' });
    const url = srv.wsUrl(`/api/chat?room=${room}`);
    const held = [];
    t.after(() => Promise.all(held.map((c) => c.close())));
    const attempt = async (localAddress) => {
        try {
            const c = await openWs(url, { token: tok, localAddress });
            held.push(c);
            return c;
        } catch (e) {
            if (e.status === 429) {
                assert.equal(e.json?.error?.code, 'too_many_connections', e.body);
                return 429;
            }
            throw e;
        }
    };
    // Each worker takes its share (5): the kernel spreads connections by
    // port, so some may be refused before 10 are open, never more than 10.
    let refused = 0;
    const fromOne = [];
    for (let i = 0; i < 200 && fromOne.length < 10; i++) {
        const r = await attempt('127.0.0.1');
        if (r === 429) refused++;
        else fromOne.push(r);
    }
    assert.equal(fromOne.length, 10, 'could not open 10 connections from 127.0.0.1');
    for (let i = 0; i < 20; i++) assert.equal(await attempt('127.0.0.1'), 429, `connection ${11 + i} from 127.0.0.1 was accepted`);
    // Another address: up to 4 (below either worker's share) always get in.
    for (let i = 0; i < 4; i++) {
        const r = await attempt('127.0.0.2');
        assert.notEqual(r, 429, 'a connection from 127.0.0.2 was refused');
        await r.send({ type: 'message', text: `from .2 #${i}`, ref: `two-${i}` });
        assert.equal((await r.next('ack')).ref, `two-${i}`);
    }
    // The held ones still work; closing two lets 127.0.0.1 in again.
    await fromOne[0].send({ type: 'message', text: 'still here', ref: 'one-0' });
    assert.equal((await fromOne[0].next('ack')).ref, 'one-0');
    await fromOne.pop().close();
    await fromOne.pop().close();
    await waitFor(async () => {
        const r = await attempt('127.0.0.1');
        return r !== 429;
    }, 10000, 100, 'a connection from 127.0.0.1 accepted again');
    t.diagnostic(`${refused} refused before 10 were open`);
    await Promise.all(held.map((c) => c.close()));
    await stopServers([srv]);
});

test('at the descriptor limit, each new client takes the place of one idle connection', async (t) => {
    // A closed connection's descriptor is free only once libevent has run
    // its finalizer, later in the loop round: the worker accepted again at
    // once, failed again, and closed another idle connection, up to 64 of
    // them, and then turned the new client away as well.
    const nofile = 128;
    const srv = await startChatd({ t, workers: 1, bin: '/usr/bin/prlimit',
        args: [`--nofile=${nofile}:${nofile}`, '--', process.env.CHATD_BIN ?? path.join(ROOT, 'bin/chatd')] });
    const idle = [];
    let closedByServer = 0;
    const openIdle = () => new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port: srv.port });
        s.on('error', () => {});
        s.once('close', () => { if (!s.ourEnd) closedByServer++; });
        s.once('connect', () => resolve(s));
        idle.push(s);
    });
    t.after(() => { for (const s of idle) { s.ourEnd = true; s.destroy(); } });
    // Past the worker's descriptors: the last ones in take the oldest's places.
    for (let i = 0; i < nofile + 10; i++) await openIdle();
    await waitFor(() => /accept: Too many open files/.test(srv.logs()), 10000, 50, 'EMFILE reached');
    await sleep(300);
    const before = closedByServer;
    for (let i = 0; i < 5; i++) {
        await openIdle();
        await sleep(100);
    }
    await sleep(300);
    const closed = closedByServer - before;
    t.diagnostic(`closed during the fill ${before}, for the 5 after it ${closed}, of ${idle.length}`);
    assert.ok(closed >= 1 && closed <= 8, `${closed} idle connections closed for 5 new ones`);
    // The worker holds about as many as its descriptors allow (less its
    // own few dozen), not 64 fewer.
    const held = idle.length - closedByServer;
    assert.ok(held >= nofile - 32, `the worker holds ${held} idle connections with ${nofile} descriptors`);
    // And a request is served, in the place of one more.
    const r = await httpGet(srv.port, '/healthz', { timeoutMs: 3000 });
    assert.equal(r.status, 200);
});
