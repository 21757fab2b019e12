// chatd behind a load balancer (etc/haproxy.cfg, docs/operations.md).
//
// A real haproxy runs the shipped configuration's `defaults`, `frontend
// chat` and `backend chatd` sections, with its own listening address, the
// two chatd instances as servers, and fast health checks (inter 200ms fall
// 2 rise 1), in front of two chatd instances that share one hub (one Redis
// prefix, one secret, one database). Through it:
//  - WebSocket clients on both instances chat with each other, and the REST
//    endpoints answer;
//  - stopping one instance (SIGTERM) closes its WebSockets with 1001, its
//    /readyz turns 503 and haproxy marks it down; from then on every fresh
//    HTTP request and WebSocket upgrade through haproxy succeeds (on the
//    other instance), and a client that was on the stopped instance
//    reconnects with `since` and misses nothing.
// haproxy is killed in every exit path (t.after, and the process exit).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
    freePort, httpGet, openWs, rnd, ROOT, startChatd, waitFor, workerOf,
} from '../lib/harness.mjs';

const NO_RATE = { CHAT_RATE_PER_SEC: 100000, CHAT_RATE_BURST: 100000 };
const REPLY_MS = 15000;
const SHIPPED = path.join(ROOT, 'etc/haproxy.cfg');

// ------------------------------------------------------------- haproxy

/** Splits a haproxy configuration into sections: [{head, lines}]. */
function sections(text) {
    const out = [];
    for (const line of text.split('\n')) {
        if (/^\s*(#|$)/.test(line)) continue;
        if (/^\S/.test(line)) out.push({ head: line.trim().replace(/\s+/g, ' '), lines: [] });
        else if (out.length) out.at(-1).lines.push(line);
    }
    return out;
}

/**
 * The test's configuration: the shipped defaults, frontend and backend
 * sections, with the test's bind address, servers and check timings, and
 * a global section fit for an unprivileged foreground haproxy.
 */
function testConfig(shipped, { port, sock, servers }) {
    const secs = sections(shipped);
    const get = (head) => {
        const s = secs.find((x) => x.head === head);
        assert.ok(s, `etc/haproxy.cfg has no '${head}' section`);
        return s;
    };
    const defaults = get('defaults');
    const fe = get('frontend chat');
    const be = get('backend chatd');
    assert.ok(fe.lines.some((l) => /^\s*bind\s/.test(l)), 'frontend chat binds');
    assert.ok(be.lines.some((l) => /^\s*option\s+httpchk\s+GET\s+\/readyz\b/.test(l)), 'backend checks GET /readyz');
    assert.ok(defaults.lines.some((l) => /^\s*timeout\s+tunnel\s/.test(l)), 'defaults set a tunnel timeout');
    const out = [
        'global',
        '    maxconn 4096',
        `    stats socket ${sock} mode 600 level admin`,
        '',
        'defaults',
        ...defaults.lines,
        '',
        'frontend chat',
        `    bind 127.0.0.1:${port}`,
        ...fe.lines.filter((l) => !/^\s*(bind|maxconn)\s/.test(l)),
        '',
        'backend chatd',
        ...be.lines.filter((l) => !/^\s*server\s/.test(l)),
        ...servers.map(({ name, port: p }) =>
            `    server ${name} 127.0.0.1:${p} check inter 200ms fastinter 200ms downinter 200ms fall 2 rise 1`),
        '',
    ];
    return out.join('\n');
}

const running = new Map(); // haproxy child -> its directory
process.on('exit', () => {
    for (const [p, dir] of running) {
        try {
            p.kill('SIGKILL');
        } catch { /* gone */ }
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

/**
 * Starts `haproxy -f cfg -db` and waits until its frontend answers. Killed
 * after the test (t.after) whatever happens. Returns {port, sock, stats(),
 * logs(), stop()}.
 */
async function startHaproxy(t, servers) {
    for (let attempt = 1; ; attempt++) {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-haproxy-'));
        const port = await freePort();
        const sock = path.join(dir, 'admin.sock');
        const cfgPath = path.join(dir, 'haproxy.cfg');
        fs.writeFileSync(cfgPath, testConfig(fs.readFileSync(SHIPPED, 'utf8'), { port, sock, servers }));
        let output = '';
        const child = spawn('haproxy', ['-f', cfgPath, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
        running.set(child, dir);
        let exited = null;
        const exitP = new Promise((resolve) => {
            child.once('exit', (code, signal) => {
                exited = { code, signal };
                running.delete(child);
                resolve(exited);
            });
            // Not started at all (haproxy not installed): no 'exit' follows.
            child.once('error', (e) => {
                output += `spawn error: ${e.message}\n`;
                exited = { error: e.message };
                running.delete(child);
                resolve(exited);
            });
        });
        child.stdout.on('data', (d) => { output = (output + d).slice(-20000); });
        child.stderr.on('data', (d) => { output = (output + d).slice(-20000); });
        const lb = {
            port,
            sock,
            logs: () => output,
            async stop() {
                if (!exited) {
                    child.kill('SIGTERM');
                    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
                    await exitP;
                    clearTimeout(timer);
                }
                fs.rmSync(dir, { recursive: true, force: true });
            },
            stats: () => haproxyStats(sock),
        };
        t.after(async () => {
            if (!t.passed) process.stderr.write(`----- haproxy output -----\n${output}\n----- end -----\n`);
            await lb.stop();
        });
        try {
            await waitFor(async () => {
                if (exited) throw new Error(`haproxy exited (${JSON.stringify(exited)}): ${output}`);
                return (await httpGet(port, '/healthz', { timeoutMs: 1000 })).status === 200;
            }, 10000, 50, 'haproxy frontend answers /healthz');
            return lb;
        } catch (e) {
            await lb.stop();
            if (attempt >= 3 || !/address already in use|cannot bind/i.test(output)) {
                e.message += `\n${testConfig(fs.readFileSync(SHIPPED, 'utf8'), { port, sock, servers })}`;
                throw e;
            }
        }
    }
}

/** `show stat` on the admin socket: {serverName: {status, check_status, ...}} of backend chatd. */
function haproxyStats(sock) {
    return new Promise((resolve, reject) => {
        const c = net.connect(sock);
        let data = '';
        c.setTimeout(3000, () => c.destroy(new Error('stats socket timed out')));
        c.on('connect', () => c.write('show stat\n'));
        c.on('data', (d) => { data += d; });
        c.on('error', reject);
        c.on('close', () => {
            const lines = data.split('\n').filter(Boolean);
            if (!lines.length || !lines[0].startsWith('# ')) {
                reject(new Error(`unexpected stats answer: ${data.slice(0, 200)}`));
                return;
            }
            const cols = lines[0].slice(2).split(',');
            const out = {};
            for (const l of lines.slice(1)) {
                const f = l.split(',');
                const row = Object.fromEntries(cols.map((k, i) => [k, f[i]]));
                if (row.pxname === 'chatd' && row.svname !== 'BACKEND') out[row.svname] = row;
            }
            resolve(out);
        });
    });
}

// ------------------------------------------------------------- helpers

async function request(c, req) {
    const ref = `r-${rnd()}`;
    await c.send({ ...req, ref });
    return c.next((e) => (e.type === 'ack' || e.type === 'error') && e.ref === ref, REPLY_MS);
}

async function post(c, text) {
    const r = await request(c, { type: 'message', text });
    assert.equal(r.type, 'ack', JSON.stringify(r));
    return r;
}

/** The worker key of an instance (one worker each). */
async function workerKey(srv) {
    const c = await openWs(srv.wsUrl('/api/chat?room=probe'), { token: srv.token({ sub: `k-${rnd()}` }) });
    const k = workerOf(c);
    await c.close();
    return k;
}

// ------------------------------------------------------------------ tests

test('etc/haproxy.cfg is a valid haproxy configuration', { timeout: 30000 }, async () => {
    const out = await new Promise((resolve, reject) => {
        execFile('haproxy', ['-c', '-f', SHIPPED], { timeout: 20000 }, (err, stdout, stderr) => {
            if (err) reject(new Error(`haproxy -c: ${err.message}\n${stdout}${stderr}`));
            else resolve(stdout + stderr);
        });
    });
    assert.match(out, /valid/i);
    // The tunnel timeout outlives chatd's ping cycle (2 x ping_interval_s = 60 s by default).
    const m = /^\s*timeout\s+tunnel\s+(\d+)(ms|s|m|h)?\s*$/m.exec(fs.readFileSync(SHIPPED, 'utf8'));
    assert.ok(m, 'timeout tunnel');
    const mult = { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] ?? 'ms'];
    assert.ok(Number(m[1]) * mult > 60, `timeout tunnel ${m[1]}${m[2] ?? 'ms'} must exceed 60 s`);
});

test('through haproxy: clients on two instances chat; a stopped instance drains with no failed request',
    { timeout: 120000 }, async (t) => {
        const secret = crypto.randomBytes(24).toString('hex');
        const prefix = `lb${rnd()}:`;
        const opts = { t, secret, prefix, workers: 1, env: NO_RATE };
        const a = await startChatd(opts);
        const b = await startChatd(opts);
        const keyA = await workerKey(a);
        const keyB = await workerKey(b);
        assert.notEqual(keyA, keyB);
        const instanceOf = (c) => ({ [keyA]: 'A', [keyB]: 'B' })[workerOf(c)] ?? `? ${workerOf(c)}`;

        const lb = await startHaproxy(t, [{ name: 'a', port: a.port }, { name: 'b', port: b.port }]);
        await waitFor(async () => {
            const s = await lb.stats();
            return s.a?.status === 'UP' && s.b?.status === 'UP' && s.a.check_status === 'L7OK' &&
                s.b.check_status === 'L7OK';
        }, 10000, 50, 'haproxy sees both instances UP after a /readyz check');

        // Clients through haproxy until one is on each instance.
        const room = `lb-${rnd()}`;
        const lbWs = (q) => `ws://127.0.0.1:${lb.port}/api/chat?${q}`;
        const clients = {};
        const extras = [];
        for (let i = 0; !(clients.A && clients.B); i++) {
            assert.ok(i < 20, '20 connections through haproxy, and not both instances');
            const sub = `u${i}-${rnd()}`;
            const c = await openWs(lbWs(`room=${room}`), { token: a.token({ sub, name: sub }) });
            c.user = sub;
            const where = instanceOf(c);
            assert.ok(where === 'A' || where === 'B', `connection on an unknown worker: ${where}`);
            if (clients[where]) extras.push(c);
            else clients[where] = c;
        }
        await Promise.all(extras.map((c) => c.close()));
        const { A: onA, B: onB } = clients;

        // Messages cross instances, both ways.
        const t1 = `from A ${rnd()}`;
        await post(onA, t1);
        const got1 = await onB.next((e) => e.type === 'message' && e.text === t1, REPLY_MS);
        assert.equal(got1.user.id, onA.user);
        const t2 = `from B ${rnd()}`;
        const ack2 = await post(onB, t2);
        await onA.next((e) => e.type === 'message' && e.text === t2, REPLY_MS);
        // Each sees the other's join (presence crosses too).
        if (!onA.welcome.online.some((u) => u.id === onB.user)) {
            await onA.next((e) => e.type === 'join' && e.user.id === onB.user, REPLY_MS);
        }

        // REST through haproxy, answered by either instance.
        const auth = { Authorization: `Bearer ${a.token({ sub: 'reader' })}` };
        const hist = await httpGet(lb.port, `/api/chat/messages?room=${room}`, { headers: auth });
        assert.equal(hist.status, 200, hist.body);
        assert.deepEqual(hist.json.messages.map((m) => m.text), [t1, t2]);
        // (The extra connections' leaves may still be on their way.)
        await waitFor(async () => {
            const users = await httpGet(lb.port, `/api/users?room=${room}`, { headers: auth });
            assert.equal(users.status, 200, users.body);
            return JSON.stringify(users.json.users.map((u) => u.id).sort()) ===
                JSON.stringify([onA.user, onB.user].sort());
        }, 10000, 50, '/api/users through haproxy lists the two users');

        // /metrics is per host, scraped directly: the balancer refuses it.
        assert.equal((await httpGet(lb.port, '/metrics')).status, 404);
        assert.equal((await httpGet(a.port, '/metrics')).status, 200);

        // Fresh requests through haproxy in a loop, while A stops.
        let markedDown = false;
        const outcomes = [];
        let looping = true;
        const probeTok = a.token({ sub: 'probe' });
        const loop = (async () => {
            while (looping) {
                const afterMark = markedDown;
                try {
                    const r = await httpGet(lb.port, '/healthz', { timeoutMs: 5000 });
                    outcomes.push({ kind: 'http', afterMark, ok: r.status === 200, detail: `${r.status} ${r.body}` });
                } catch (e) {
                    outcomes.push({ kind: 'http', afterMark, ok: false, detail: e.code || e.message });
                }
                const afterMark2 = markedDown;
                try {
                    const c = await openWs(lbWs(`room=probe-${room}`), { token: probeTok });
                    const where = instanceOf(c);
                    outcomes.push({ kind: 'ws', afterMark: afterMark2, ok: true, where, detail: where });
                    c.terminate();
                } catch (e) {
                    // Upgraded by A just before its stop, then closed with
                    // 1001 before the welcome: a drain, the client reconnects.
                    const drained = !e.status && /closed \(1001/.test(e.message);
                    outcomes.push({
                        kind: 'ws', afterMark: afterMark2, ok: false, drained,
                        detail: e.status ? `${e.status} ${e.body}` : e.message,
                    });
                }
            }
        })();
        try {
            await waitFor(() => outcomes.length >= 6, 10000, 20, 'the request loop runs');
            a.kill('SIGTERM');
            // A closes its sockets with 1001 ("going away").
            const closed = await onA.waitClose(15000);
            assert.equal(closed.code, 1001);
            await waitFor(async () => {
                const s = await lb.stats();
                return /^DOWN/.test(s.a?.status ?? '') && s.b?.status === 'UP';
            }, 15000, 20, 'haproxy marks the stopped instance DOWN');
            markedDown = true;
            const after = () => outcomes.filter((o) => o.afterMark);
            await waitFor(() => after().filter((o) => o.kind === 'http').length >= 20 &&
                after().filter((o) => o.kind === 'ws').length >= 20, 30000, 20, '20 HTTP and 20 WS requests after the down-mark');
        } finally {
            looping = false;
            await loop;
        }
        const before = outcomes.filter((o) => !o.afterMark);
        const afterMark = outcomes.filter((o) => o.afterMark);
        t.diagnostic(`before the down-mark: ${before.length} requests, ${before.filter((o) => !o.ok).length} failed` +
            ` (${[...new Set(before.filter((o) => !o.ok).map((o) => o.detail))].join('; ')})`);
        assert.deepEqual(afterMark.filter((o) => !o.ok).map((o) => `${o.kind}: ${o.detail}`), [],
            'no request fails once haproxy has marked the stopped instance down');
        // Before the down-mark too: the draining host's 503s and refused
        // connections are retried on the other host (retry-on, redispatch).
        // Only a WebSocket closed with 1001 by the drain may be seen.
        assert.deepEqual(before.filter((o) => !o.ok && !o.drained).map((o) => `${o.kind}: ${o.detail}`), [],
            'no request fails while haproxy has not yet noticed the stop (retry-on 503 / conn-failure)');
        assert.deepEqual([...new Set(afterMark.filter((o) => o.kind === 'ws').map((o) => o.where))], ['B'],
            'new WebSockets all go to the remaining instance');

        // The stopped instance exits cleanly.
        const exit = await a.waitExit(15000);
        assert.equal(exit.code, 0, `A's exit ${JSON.stringify(exit)}`);

        // A's client comes back through haproxy with since, lands on B and
        // misses nothing said meanwhile.
        const t3 = `while away ${rnd()}`;
        await post(onB, t3);
        const back = await openWs(lbWs(`room=${room}&since=${ack2.seq}`), { token: a.token({ sub: onA.user, name: onA.user }) });
        assert.equal(instanceOf(back), 'B');
        const replayed = await back.next((e) => e.type === 'message' && e.text === t3, REPLY_MS);
        assert.equal(replayed.seq, ack2.seq + 1);
        const t4 = `live again ${rnd()}`;
        await post(back, t4);
        await onB.next((e) => e.type === 'message' && e.text === t4, REPLY_MS);
        await Promise.all([back.close(), onB.close()]);
    });
