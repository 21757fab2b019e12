#!/usr/bin/env node
// Memory of an idle WebSocket connection in a chatd worker.
//
//   node bench/idle-rss.mjs [--connections 10000] [--rooms 100] [--batch 200]
//                           [--per-process 8000]
//
// Starts bin/chatd with ONE worker (private Redis and PostgreSQL as for the
// tests: scripts/services.sh start, database migrated), opens N WebSocket
// connections (N distinct users spread over R rooms) from client processes
// of at most --per-process sockets each (ulimit -n), waits until each has
// its welcome and the worker's memory has settled, and reads the worker's
// VmRSS and RssAnon from /proc/<pid>/status: with no connection, at N/2
// and at N. Prints the cost per idle connection, as the total over N and
// as the slope between N/2 and N (the latter leaves out one-time growth).
// The clients answer the server's pings, so they stay as long as needed.
// Not part of `make test`.

import { fork } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const SELF = fileURLToPath(import.meta.url);

// ----------------------------------------------------------------- client

/** Opens one raw WebSocket, answers pings; resolves once the welcome came. */
function openIdle(port, reqPath) {
    return new Promise((resolve, reject) => {
        const sock = net.connect({ host: '127.0.0.1', port });
        let buf = Buffer.alloc(0);
        let upgraded = false;
        let welcomed = false;
        const timer = setTimeout(() => fail(new Error('no welcome within 60 s')), 60000);
        const fail = (e) => {
            clearTimeout(timer);
            sock.destroy();
            reject(e);
        };
        sock.on('error', (e) => { if (!welcomed) fail(e); });
        sock.on('close', () => { if (!welcomed) fail(new Error('closed before the welcome')); });
        sock.on('data', (d) => {
            buf = buf.length ? Buffer.concat([buf, d]) : d;
            if (!upgraded) {
                const end = buf.indexOf('\r\n\r\n');
                if (end < 0) return;
                const status = buf.subarray(0, 12).toString('latin1');
                if (status !== 'HTTP/1.1 101') {
                    fail(new Error(`upgrade refused: ${buf.subarray(0, end).toString('latin1').split('\r\n')[0]}`));
                    return;
                }
                upgraded = true;
                buf = buf.subarray(end + 4);
            }
            // Server frames: unmasked, small here except the welcome.
            for (;;) {
                if (buf.length < 2) break;
                let len = buf[1] & 0x7f;
                let off = 2;
                if (len === 126) {
                    if (buf.length < 4) break;
                    len = buf.readUInt16BE(2);
                    off = 4;
                } else if (len === 127) {
                    if (buf.length < 10) break;
                    len = Number(buf.readBigUInt64BE(2));
                    off = 10;
                }
                if (buf.length < off + len) break;
                const op = buf[0] & 0x0f;
                const payload = buf.subarray(off, off + len);
                if (op === 0x9) {
                    const key = crypto.randomBytes(4);
                    const out = Buffer.alloc(6 + len);
                    out[0] = 0x8a;
                    out[1] = 0x80 | len;
                    key.copy(out, 2);
                    for (let i = 0; i < len; i++) out[6 + i] = payload[i] ^ key[i & 3];
                    sock.write(out);
                } else if (op === 0x1 && !welcomed && payload.includes('"welcome"')) {
                    welcomed = true;
                    clearTimeout(timer);
                    resolve(sock);
                }
                buf = buf.subarray(off + len);
            }
            if (buf.length === 0) buf = Buffer.alloc(0); // drop the reference to the chunk
        });
        sock.on('connect', () => {
            sock.write(`GET ${reqPath} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
                'Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
                `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n\r\n`);
        });
    });
}

const b64url = (s) => Buffer.from(s).toString('base64url');
function token(secret, sub) {
    const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify({ sub, role: 'member' }))}`;
    return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
}

async function clientMain() {
    const sockets = [];
    process.on('message', async (m) => {
        if (m.op === 'open') {
            try {
                for (let i = m.from; i < m.to; i += m.batch) {
                    const batch = [];
                    for (let k = i; k < Math.min(m.to, i + m.batch); k++) {
                        const room = `idle-${m.run}-${k % m.rooms}`;
                        const pathq = `/api/chat?room=${room}&token=${token(m.secret, `idle-${m.run}-${k}`)}`;
                        batch.push(openIdle(m.port, pathq));
                    }
                    sockets.push(...(await Promise.all(batch)));
                }
                process.send({ op: 'ready', count: sockets.length });
            } catch (e) {
                process.send({ op: 'error', message: `${e.message} after ${sockets.length} connections` });
            }
        } else if (m.op === 'exit') {
            for (const s of sockets) s.destroy();
            process.exit(0);
        }
    });
    process.send({ op: 'hello' });
}

// ----------------------------------------------------------------- driver

function arg(name, def) {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : def;
}

function memOf(pid) {
    const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(st)?.[1] ?? NaN);
    return { rss: kb('VmRSS') * 1024, anon: kb('RssAnon') * 1024 };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until the worker's RSS stops moving (two readings 1 s apart within 64 KiB; at most 20 s). */
async function settled(pid) {
    let prev = memOf(pid);
    for (let i = 0; i < 20; i++) {
        await sleep(1000);
        const cur = memOf(pid);
        if (Math.abs(cur.rss - prev.rss) <= 65536) return cur;
        prev = cur;
    }
    return prev;
}

async function driverMain() {
    const N = arg('connections', 10000);
    const rooms = arg('rooms', 100);
    const batch = arg('batch', 200);
    const perProcess = arg('per-process', 8000);
    const { startChatd } = await import('../tests/lib/harness.mjs');
    const srv = await startChatd({ workers: 1, env: { CHAT_LOG_LEVEL: 'warn' }, startTimeoutMs: 20000 });
    const clients = [];
    try {
        const [worker] = srv.children();
        if (!worker) throw new Error('no worker process');
        const run = crypto.randomBytes(3).toString('hex');
        const procs = Math.ceil(N / perProcess);
        for (let p = 0; p < procs; p++) {
            const child = fork(SELF, ['--client'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
            const inbox = [];
            const waiters = [];
            child.on('message', (m) => (waiters.length ? waiters.shift()(m) : inbox.push(m)));
            const next = () => (inbox.length ? Promise.resolve(inbox.shift()) : new Promise((r) => waiters.push(r)));
            await next(); // hello
            clients.push({ child, next });
        }
        // Opens connections [from, to) spread evenly over the client processes.
        const open = async (from, to) => {
            const per = Math.ceil((to - from) / procs);
            await Promise.all(clients.map(async (c, p) => {
                const a = from + p * per;
                const b = Math.min(to, a + per);
                if (a >= b) return;
                c.child.send({ op: 'open', port: srv.port, secret: srv.secret, run, rooms, batch, from: a, to: b });
                const m = await c.next();
                if (m.op !== 'ready') throw new Error(`client ${p}: ${m.message}`);
            }));
        };

        const m0 = await settled(worker);
        const t0 = Date.now();
        await open(0, Math.floor(N / 2));
        const mHalf = await settled(worker);
        await open(Math.floor(N / 2), N);
        const mFull = await settled(worker);
        const secs = (Date.now() - t0) / 1000;
        const half = N - Math.floor(N / 2);
        const fmt = (b) => `${(b / 1048576).toFixed(1)} MiB`;
        const per = (a, b, n) => ((b - a) / n).toFixed(0);
        console.log(`chatd worker pid ${worker}, ${N} idle connections (${rooms} rooms, distinct users), ` +
            `opened in ${secs.toFixed(1)} s`);
        console.log(`VmRSS   : ${fmt(m0.rss)} -> ${fmt(mHalf.rss)} -> ${fmt(mFull.rss)}`);
        console.log(`RssAnon : ${fmt(m0.anon)} -> ${fmt(mHalf.anon)} -> ${fmt(mFull.anon)}`);
        console.log(`bytes per idle connection, VmRSS : ${per(m0.rss, mFull.rss, N)} over all, ` +
            `${per(mHalf.rss, mFull.rss, half)} marginal (N/2 -> N)`);
        console.log(`bytes per idle connection, RssAnon: ${per(m0.anon, mFull.anon, N)} over all, ` +
            `${per(mHalf.anon, mFull.anon, half)} marginal (N/2 -> N)`);
        console.log(JSON.stringify({
            connections: N, rooms, rss0: m0.rss, rss_half: mHalf.rss, rss_full: mFull.rss,
            bytes_per_conn: Math.round((mFull.rss - m0.rss) / N),
            bytes_per_conn_marginal: Math.round((mFull.rss - mHalf.rss) / half),
        }));
    } finally {
        for (const c of clients) c.child.send({ op: 'exit' });
        await srv.stop('SIGTERM', 30000);
    }
}

if (process.argv.includes('--client')) clientMain();
else driverMain().catch((e) => { console.error(e); process.exit(1); });
