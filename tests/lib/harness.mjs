// Helpers shared by the integration tests (node:test + node:assert; `ws`
// is the only npm dependency).
//
//   const srv = await startChatd({ t });          // logs dumped if t fails
//   const tok = mintToken(srv.secret, { sub: 'alice', role: 'member' });
//   const c = await openWs(srv.wsUrl('/api/chat?room=r1'), { token: tok });
//   c.send({ type: 'message', text: 'hi', ref: 'a1' });
//   const ack = await c.next('ack');
//
// Service locations come from the environment that scripts/test.sh exports
// (CHATD_REDIS_URL, CHATD_PG_TEST_DSN, ...). When a test file is run by
// hand without them, they are read from `scripts/services.sh env`.
// Set CHATD_TEST_LOGS=1 to stream every chatd's output live to stderr.

import { spawn, execFile, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export { WebSocket };

// ------------------------------------------------------------ environment

function loadServiceEnv() {
    const need = ['CHATD_REDIS_URL', 'CHATD_REDIS_PORT', 'CHATD_PG_TEST_DSN', 'CHATD_PG_ICU_DSN', 'CHATD_PG_DSN'];
    if (need.every((k) => process.env[k])) return;
    let out;
    try {
        out = execFileSync(path.join(ROOT, 'scripts/services.sh'), ['env'],
            { encoding: 'utf8', timeout: 15000, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
        throw new Error(`harness: CHATD_* not set and 'scripts/services.sh env' failed: ${e.message}`);
    }
    for (const line of out.split('\n')) {
        const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line);
        // services.sh quotes with printf %q; plain backslash escapes are
        // all a checkout path can produce in practice.
        if (m && !process.env[m[1]]) process.env[m[1]] = m[2].replace(/\\(.)/g, '$1');
    }
}
loadServiceEnv();

export const env = Object.freeze({
    redisUrl: process.env.CHATD_REDIS_URL,
    redisPort: process.env.CHATD_REDIS_PORT,
    pgDsn: process.env.CHATD_PG_DSN,
    pgTestDsn: process.env.CHATD_PG_TEST_DSN,
    pgIcuDsn: process.env.CHATD_PG_ICU_DSN,
});

// ------------------------------------------------------------- utilities

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Random hex, for names that must not collide between tests. */
export const rnd = () => crypto.randomBytes(5).toString('hex');
/** A fresh room name. */
export const roomName = (what) => `${what}-${rnd()}`;
/** The worker process a connection landed on: the first three groups of its conn_id. */
export const workerOf = (c) => c.welcome.conn_id.split('-').slice(0, 3).join('-');
/** An Authorization header for a token. */
export const auth = (tok) => ({ Authorization: `Bearer ${tok}` });
/** Settings for tests that are not about the rate limit: a rate nobody reaches. */
export const NO_RATE = Object.freeze({ CHAT_RATE_PER_SEC: 100000, CHAT_RATE_BURST: 100000 });

/** Seconds since the epoch, as JWT claims count time. */
export const nowSec = () => Math.floor(Date.now() / 1000);

/**
 * Polls fn (sync or async) until it returns a truthy value, and returns that
 * value. For eventual conditions only, never for timing assertions.
 */
export async function waitFor(fn, timeoutMs = 5000, intervalMs = 50, what = undefined) {
    const deadline = Date.now() + timeoutMs;
    let lastErr;
    for (;;) {
        try {
            const v = await fn();
            if (v) return v;
            lastErr = undefined;
        } catch (e) {
            lastErr = e;
        }
        if (Date.now() >= deadline) {
            const desc = what ?? String(fn).replace(/\s+/g, ' ').slice(0, 120);
            const err = new Error(`waitFor: not true within ${timeoutMs} ms: ${desc}` +
                (lastErr ? ` (last error: ${lastErr.message})` : ''));
            if (lastErr) err.cause = lastErr;
            throw err;
        }
        await sleep(Math.min(intervalMs, Math.max(1, deadline - Date.now())));
    }
}

/** A port that was free a moment ago on 127.0.0.1 (callers retry on EADDRINUSE). */
export function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

function execFileP(file, args, opts = {}) {
    return new Promise((resolve, reject) => {
        execFile(file, args, { encoding: 'utf8', timeout: 30000, maxBuffer: 64 << 20, ...opts },
            (err, stdout, stderr) => {
                if (err) {
                    err.message = `${path.basename(file)} ${args.join(' ')}: ${err.message}` +
                        (stderr ? `\n${stderr.trim()}` : '');
                    err.stdout = stdout;
                    err.stderr = stderr;
                    reject(err);
                } else {
                    resolve(stdout);
                }
            });
    });
}

const chomp = (s) => s.replace(/\r?\n$/, '');

/** redis-cli against the private Redis; resolves with its output, final newline removed. */
export async function redisCli(...args) {
    return chomp(await execFileP('redis-cli', ['-h', '127.0.0.1', '-p', String(env.redisPort), ...args],
        { timeout: 10000 }));
}

/** A value as an SQL literal for psql: quoted, or NULL for null. */
export const sq = (v) => (v === null ? 'NULL' : `'${String(v).replace(/'/g, "''")}'`);

/** psql -At; resolves with the output (rows on lines, columns split by '|'), final newline removed. */
export async function psql(sql, dsn = env.pgTestDsn) {
    return chomp(await execFileP('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', dsn, '-c', sql],
        { timeout: 30000 }));
}

/**
 * Runs bin/chatctl with the given CHAT_* settings and none inherited from
 * this process: {code, stdout, stderr}.
 */
export function runChatctl(args, settings = {}, timeoutMs = 20000) {
    const childEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CHAT_')) childEnv[k] = v;
    Object.assign(childEnv, settings);
    return new Promise((resolve) => {
        execFile(path.join(ROOT, 'bin/chatctl'), args, { env: childEnv, encoding: 'utf8', timeout: timeoutMs },
            (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
    });
}

/** bin/chatctl against srv's hub: its Redis prefix and secret, then extra settings. */
export function chatctlFor(srv, args, extra = {}, timeoutMs = 20000) {
    return runChatctl(args, {
        CHAT_REDIS_URL: env.redisUrl, CHAT_REDIS_PREFIX: srv.prefix, CHAT_JWT_SECRET: srv.secret, ...extra,
    }, timeoutMs);
}

/** A counter of srv's /metrics without labels (undefined when it has none by that name). */
export async function metricCounter(srv, name) {
    const r = await httpGet(srv.port, '/metrics');
    const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(r.body);
    return m ? Number(m[1]) : undefined;
}

/** scripts/services.sh <cmd>: start, stop, stop-redis, start-redis, stop-pg, start-pg, status. */
export async function services(cmd) {
    return execFileP(path.join(ROOT, 'scripts/services.sh'), [cmd], { timeout: 120000 });
}

// ------------------------------------------------------------------- JWT

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const HASH = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };

/**
 * Mints a JWT. Claims left undefined are omitted. Options beside claims:
 *   alg       header alg and signing algorithm (HS256, HS384, HS512, none)
 *   header    fields merged over the header after alg (so {header:{alg:'HS512'}}
 *             claims HS512 while signing with `alg`)
 *   ttl       sets exp = now + ttl seconds (unless exp is given)
 *   badSignature  corrupts the signature
 *   rawPayload    a string used verbatim as the payload (malformed JSON tests)
 */
export function mintToken(secret, opts = {}) {
    const { alg = 'HS256', header = {}, ttl, badSignature = false, rawPayload, ...claims } = opts;
    const h = { alg, typ: 'JWT', ...header };
    const payload = {};
    for (const [k, v] of Object.entries(claims)) if (v !== undefined) payload[k] = v;
    if (ttl !== undefined && payload.exp === undefined) payload.exp = nowSec() + ttl;
    const input = `${b64url(JSON.stringify(h))}.${b64url(rawPayload ?? JSON.stringify(payload))}`;
    let sig = '';
    if (alg !== 'none') {
        const hash = HASH[alg];
        if (!hash) throw new Error(`mintToken: cannot sign with alg ${alg}`);
        sig = crypto.createHmac(hash, secret).update(input).digest('base64url');
    }
    if (badSignature) {
        const raw = sig ? Buffer.from(sig, 'base64url') : Buffer.alloc(32);
        raw[0] ^= 0x55;
        sig = raw.toString('base64url');
    }
    return `${input}.${sig}`;
}

/** Splits a token: {header, payload, signature, valid} (valid: HS256/384/512 with secret). */
export function decodeToken(token, secret = undefined) {
    const [h, p, s] = token.split('.');
    const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
    let payload;
    try {
        payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
    } catch {
        payload = undefined;
    }
    let valid;
    if (secret !== undefined) {
        const hash = HASH[header.alg];
        const got = Buffer.from(s ?? '', 'base64url');
        const want = hash ? crypto.createHmac(hash, secret).update(`${h}.${p}`).digest() : null;
        valid = Boolean(want) && got.length === want.length && crypto.timingSafeEqual(got, want);
    }
    return { header, payload, signature: s, valid };
}

// ------------------------------------------------------------------ HTTP

const portOf = (p) => (typeof p === 'object' && p !== null ? p.port : p);

/** One HTTP request on a fresh connection: {status, headers, body, json}. */
export function httpGet(port, reqPath, { headers = {}, method = 'GET', body, timeoutMs = 5000 } = {}) {
    return new Promise((resolve, reject) => {
        const req = http.request({
            host: '127.0.0.1', port: portOf(port), path: reqPath, method, headers, agent: false,
        }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('error', reject);
            res.on('end', () => {
                const text = Buffer.concat(chunks).toString('utf8');
                let json;
                try {
                    json = JSON.parse(text);
                } catch {
                    json = undefined;
                }
                resolve({ status: res.statusCode, headers: res.headers, body: text, json });
            });
        });
        req.setTimeout(timeoutMs, () =>
            req.destroy(new Error(`${method} ${reqPath}: no complete response within ${timeoutMs} ms`)));
        req.on('error', reject);
        if (body !== undefined) req.write(body);
        req.end();
    });
}

/**
 * Writes bytes on a plain TCP connection and resolves with every byte read
 * until the server closes, `until(buffer)` returns true, or timeoutMs passes
 * (then the result has .timedOut = true). `bytes` may be an array of chunks,
 * written gapMs apart. `end: true` half-closes after writing. The resulting
 * Buffer also carries .closed (server closed) and .error (e.g. ECONNRESET).
 */
export function rawRequest(port, bytes, { timeoutMs = 5000, until, end = false, gapMs = 0 } = {}) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        let done = false;
        let connected = false;
        const sock = net.connect({ host: '127.0.0.1', port: portOf(port) });
        const finish = (extra) => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            sock.destroy();
            resolve(Object.assign(Buffer.concat(chunks), { timedOut: false, closed: false, error: undefined }, extra));
        };
        const timer = setTimeout(() => finish({ timedOut: true }), timeoutMs);
        sock.on('data', (d) => {
            chunks.push(d);
            if (until && until(Buffer.concat(chunks))) finish({});
        });
        sock.on('end', () => finish({ closed: true }));
        sock.on('close', () => finish({ closed: true }));
        sock.on('error', (e) => {
            if (!connected) {
                done = true;
                clearTimeout(timer);
                reject(e);
            } else {
                finish({ closed: true, error: e });
            }
        });
        sock.on('connect', async () => {
            connected = true;
            const parts = Array.isArray(bytes) ? bytes : [bytes];
            for (let i = 0; i < parts.length && !done; i++) {
                if (i > 0 && gapMs) await sleep(gapMs);
                if (!done) sock.write(parts[i]);
            }
            if (end && !done) sock.end();
        });
    });
}

// ----------------------------------------------------------------- chatd

const live = new Set(); // running chatd instances
function killGroup(pid, sig) {
    try {
        process.kill(-pid, sig);
    } catch {
        try {
            process.kill(pid, sig);
        } catch { /* gone */ }
    }
}
process.on('exit', () => {
    for (const s of live) {
        if (groupPids(s.pid).length) killGroup(s.pid, 'SIGKILL');
        fs.rmSync(s.tmpdir, { recursive: true, force: true });
    }
});
for (const [sig, num] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
    // process.exit runs the exit handler above, which kills and cleans up.
    process.once(sig, () => process.exit(128 + num));
}

/** Pids in process group pgid (chatd runs in its own group: master + workers). */
function groupPids(pgid) {
    const out = [];
    for (const d of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(d)) continue;
        try {
            const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
            const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
            if (Number(f[2]) === pgid && f[0] !== 'Z') out.push(Number(d));
        } catch { /* exited meanwhile */ }
    }
    return out;
}

export function childPids(ppid) {
    const out = [];
    for (const d of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(d)) continue;
        try {
            const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
            const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
            if (Number(f[1]) === ppid && f[0] !== 'Z') out.push(Number(d));
        } catch { /* exited meanwhile */ }
    }
    return out;
}

class LineRing {
    constructor(max) {
        this.max = max;
        this.lines = [];
        this.partial = { out: '', err: '' };
    }
    push(stream, chunk) {
        const text = this.partial[stream] + chunk.toString('utf8');
        const parts = text.split('\n');
        this.partial[stream] = parts.pop();
        for (const l of parts) this.add(stream, l);
    }
    add(stream, line) {
        this.lines.push(`[${stream}] ${line}`);
        if (this.lines.length > this.max) this.lines.splice(0, this.lines.length - this.max);
    }
    text() {
        const tail = Object.entries(this.partial).filter(([, v]) => v).map(([k, v]) => `[${k}] ${v}`);
        return [...this.lines, ...tail].join('\n');
    }
}

const BIND_FAILURE = /address already in use|EADDRINUSE|could not bind|cannot bind|bind\(\)?.*failed/i;

/**
 * Starts bin/chatd on a free port and waits (bounded) for GET /healthz 200.
 * Options:
 *   workers         CHAT_WORKERS (2)
 *   env             over everything else; CHAT_PORT there pins the port,
 *                   a value of undefined removes a variable
 *   args            command-line arguments
 *   prefix          CHAT_REDIS_PREFIX (unique per instance; give two
 *                   instances the same one to make them share one hub)
 *   secret          CHAT_JWT_SECRET (random per instance)
 *   t               a node:test context: the server's recent output is
 *                   printed if that test fails, and it is stopped after it
 *   startTimeoutMs  bound of the /healthz wait (10000)
 *   bin, logLines   the binary (bin/chatd), lines of output kept (2000)
 * Returns {port, pid, secret, prefix, pidFile, url(path), wsUrl(path),
 * token(claims), logs(), dumpLogs(), children(), kill(sig), killAll(sig),
 * waitExit(ms), stop(sig, ms), exitInfo, process}.
 */
export async function startChatd(opts = {}) {
    const pinned = opts.env && opts.env.CHAT_PORT !== undefined;
    for (let attempt = 1; ; attempt++) {
        const port = pinned ? Number(opts.env.CHAT_PORT) : await freePort();
        try {
            return await launchChatd(port, opts);
        } catch (e) {
            if (!e.bindFailure || pinned || attempt >= 5) throw e;
        }
    }
}

async function launchChatd(port, {
    workers = 2, env: extraEnv = {}, args = [], prefix, secret, t,
    startTimeoutMs = 10000, bin = process.env.CHATD_BIN ?? path.join(ROOT, 'bin/chatd'), logLines = 2000,
} = {}) {
    if (!fs.existsSync(bin)) throw new Error(`startChatd: ${bin} does not exist (run make)`);
    secret ??= crypto.randomBytes(32).toString('hex');
    prefix ??= `t${crypto.randomBytes(5).toString('hex')}:`;
    const tmpdir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-test-'));
    const pidFile = path.join(tmpdir, 'chatd.pid');
    const base = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CHAT_')) base[k] = v;
    const childEnv = {
        ...base,
        CHAT_PORT: String(port),
        CHAT_BIND: '127.0.0.1',
        CHAT_WORKERS: String(workers),
        CHAT_JWT_SECRET: secret,
        CHAT_REDIS_URL: env.redisUrl,
        CHAT_PG_DSN: env.pgTestDsn,
        CHAT_REDIS_PREFIX: prefix,
        CHAT_PID_FILE: pidFile,
        CHAT_LOG_LEVEL: 'info',
        CHAT_STATIC_DIR: 'web',
    };
    // The caller's env wins; a value of undefined or null removes the variable.
    for (const [k, v] of Object.entries(extraEnv)) {
        if (v === undefined || v === null) delete childEnv[k];
        else childEnv[k] = String(v);
    }
    const ring = new LineRing(logLines);
    const streamLive = process.env.CHATD_TEST_LOGS === '1';
    // detached: chatd gets its own process group, so the master and its
    // workers can be killed together whatever state the master is in.
    const child = spawn(bin, args, { cwd: ROOT, env: childEnv, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    // Unreferenced: a test file that forgets to stop a server still ends
    // (the exit handler then kills it) instead of hanging the runner.
    child.unref();
    child.stdout.unref?.();
    child.stderr.unref?.();
    let exitInfo = null;
    const exited = new Promise((resolve) => {
        child.once('exit', (code, signal) => {
            exitInfo = { code, signal };
            resolve(exitInfo);
        });
        child.once('error', (e) => {
            ring.add('err', `spawn error: ${e.message}`);
            exitInfo = { code: null, signal: null, error: e };
            resolve(exitInfo);
        });
    });
    child.stdout.on('data', (d) => {
        ring.push('out', d);
        if (streamLive) process.stderr.write(`[chatd:${port}] ${d}`);
    });
    child.stderr.on('data', (d) => {
        ring.push('err', d);
        if (streamLive) process.stderr.write(`[chatd:${port}] ${d}`);
    });

    const server = {
        port, secret, prefix, pidFile, tmpdir, process: child,
        get pid() { return child.pid; },
        /** {code, signal} once the master has exited, else null. */
        get exitInfo() { return exitInfo; },
        url: (p = '/') => `http://127.0.0.1:${port}${p}`,
        wsUrl: (p = '/api/chat') => `ws://127.0.0.1:${port}${p}`,
        token: (claims = {}) => mintToken(secret, claims),
        logs: () => ring.text(),
        dumpLogs(label = 'chatd') {
            process.stderr.write(`----- ${label} on port ${port} (pid ${child.pid}), recent output -----\n` +
                `${ring.text()}\n----- end of ${label} output -----\n`);
        },
        /**
         * Resolves {code, signal} when the master exits (rejects after
         * timeoutMs). The child is unreferenced; the timer here is what keeps
         * the test process alive while waiting.
         */
        async waitExit(timeoutMs = 10000) {
            if (exitInfo) return exitInfo;
            let timer;
            try {
                return await Promise.race([exited, new Promise((_, reject) => {
                    timer = setTimeout(() => reject(new Error(`chatd (pid ${child.pid}) still running after ${timeoutMs} ms`)), timeoutMs);
                })]);
            } finally {
                clearTimeout(timer);
            }
        },
        /** Pids of the master's live children (the workers). */
        children: () => childPids(child.pid),
        /** Sends signal to the master only (its workers see whatever the master does). */
        kill(signal = 'SIGKILL') {
            if (!exitInfo) {
                try {
                    process.kill(child.pid, signal);
                } catch { /* gone */ }
            }
        },
        /** Sends signal to the master and every worker (the process group). */
        killAll(signal = 'SIGKILL') { killGroup(child.pid, signal); },
        /**
         * Sends signal to the master; after timeoutMs, SIGKILLs the whole group.
         * Resolves {code, signal, leftover}: leftover lists processes of the
         * group still alive 2 s after the master exited (then killed).
         */
        async stop(signal = 'SIGTERM', timeoutMs = 15000) {
            if (!exitInfo) {
                try {
                    process.kill(child.pid, signal);
                } catch { /* already gone */ }
                let timer;
                const timedOut = await Promise.race([
                    exited.then(() => false),
                    new Promise((r) => { timer = setTimeout(() => r(true), timeoutMs); }),
                ]);
                clearTimeout(timer);
                if (timedOut) {
                    ring.add('err', `harness: no exit ${timeoutMs} ms after ${signal}; SIGKILL`);
                    killGroup(child.pid, 'SIGKILL');
                    await server.waitExit(5000);
                }
            }
            let leftover = [];
            const deadline = Date.now() + 2000;
            while ((leftover = groupPids(child.pid)).length && Date.now() < deadline) await sleep(50);
            if (leftover.length) killGroup(child.pid, 'SIGKILL');
            live.delete(server);
            fs.rmSync(tmpdir, { recursive: true, force: true });
            return { ...exitInfo, leftover };
        },
    };
    live.add(server);

    if (t) {
        t.after(async () => {
            if (!t.passed) server.dumpLogs();
            await server.stop();
        });
    }

    const deadline = Date.now() + startTimeoutMs;
    let last = 'no answer';
    while (Date.now() < deadline) {
        if (exitInfo) break;
        try {
            const r = await httpGet(port, '/healthz', { timeoutMs: 1000 });
            if (r.status === 200) return server;
            last = `status ${r.status}`;
        } catch (e) {
            last = e.code || e.message;
        }
        await sleep(50);
    }
    const why = exitInfo
        ? `exited (code ${exitInfo.code}, signal ${exitInfo.signal}) before /healthz answered`
        : `/healthz did not answer 200 within ${startTimeoutMs} ms (last: ${last})`;
    await server.stop('SIGKILL', 2000);
    const err = new Error(`startChatd: ${bin} on port ${port} ${why}\n----- chatd output -----\n${ring.text()}`);
    err.bindFailure = Boolean(exitInfo) && BIND_FAILURE.test(ring.text());
    throw err;
}

/**
 * Runs fn(); if it throws, prints the recent output of each server first.
 * For servers started outside a test context (before() hooks).
 */
export async function withLogs(servers, fn) {
    try {
        return await fn();
    } catch (e) {
        for (const s of [].concat(servers)) s.dumpLogs();
        throw e;
    }
}

// ------------------------------------------------------------- WebSocket

function matcher(pred) {
    if (typeof pred === 'function') return pred;
    if (pred === undefined) return () => true;
    if (typeof pred === 'string') return (ev) => ev.type === pred;
    if (typeof pred === 'object') {
        return (ev) => Object.entries(pred).every(([k, v]) => ev !== null && typeof ev === 'object' && ev[k] === v);
    }
    throw new TypeError('predicate must be a function, a type string or an object of fields');
}
const describePred = (pred) => (typeof pred === 'function' ? String(pred).replace(/\s+/g, ' ').slice(0, 100)
    : JSON.stringify(pred));

/**
 * A WebSocket client with an event queue. Received text frames are parsed
 * as JSON; frames that are not JSON appear as {type:'__text', text}, binary
 * ones as {type:'__binary', data}. Every event is also kept in .received.
 */
export class WsClient {
    constructor(ws) {
        this.ws = ws;
        this.queue = [];
        this.received = [];
        this.waiters = [];
        this.closeInfo = null;
        this.error = null;
        this.welcome = undefined;
        this.closed = new Promise((resolve) => {
            ws.on('close', (code, reason) => {
                this.closeInfo = { code, reason: reason.toString('utf8') };
                for (const w of this.waiters.splice(0)) {
                    clearTimeout(w.timer);
                    w.reject(new Error(`connection closed (${code} ${this.closeInfo.reason}) while waiting ` +
                        `for ${w.desc}; unconsumed: ${this.summary()}`));
                }
                resolve(this.closeInfo);
            });
        });
        ws.on('error', (e) => { this.error = e; });
        ws.on('message', (data, isBinary) => {
            let ev;
            if (isBinary) {
                ev = { type: '__binary', data };
            } else {
                const text = data.toString('utf8');
                try {
                    ev = JSON.parse(text);
                } catch {
                    ev = { type: '__text', text };
                }
            }
            this.received.push(ev);
            const i = this.waiters.findIndex((w) => w.match(ev));
            if (i >= 0) {
                const [w] = this.waiters.splice(i, 1);
                clearTimeout(w.timer);
                w.resolve(ev);
            } else {
                this.queue.push(ev);
            }
        });
    }

    get socket() { return this.ws._socket; }

    get readyState() { return this.ws.readyState; }

    summary() {
        const s = this.queue.map((e) => JSON.stringify(e)).join(', ');
        return s.length > 600 ? `${s.slice(0, 600)}...` : `[${s}]`;
    }

    /**
     * The next received event matching pred (a function, a type string, or
     * an object whose fields must be equal); events that do not match stay
     * queued for later calls.
     */
    next(pred = undefined, timeoutMs = 5000) {
        const match = matcher(pred);
        const i = this.queue.findIndex(match);
        if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0]);
        const desc = describePred(pred);
        if (this.closeInfo) {
            return Promise.reject(new Error(`connection closed (${this.closeInfo.code} ${this.closeInfo.reason}) ` +
                `before ${desc}; unconsumed: ${this.summary()}`));
        }
        return new Promise((resolve, reject) => {
            const w = { match, resolve, reject, desc };
            w.timer = setTimeout(() => {
                this.waiters.splice(this.waiters.indexOf(w), 1);
                reject(new Error(`no event matching ${desc} within ${timeoutMs} ms; unconsumed: ${this.summary()}`));
            }, timeoutMs);
            this.waiters.push(w);
        });
    }

    /**
     * Throws if an event matching pred is queued or arrives within ms. The
     * one timing-based helper: use it only to check that something is NOT
     * delivered (typing not echoed, no duplicate broadcast).
     */
    async expectNone(pred = undefined, ms = 300) {
        const match = matcher(pred);
        const deadline = Date.now() + ms;
        while (Date.now() < deadline && !this.queue.some(match)) await sleep(Math.min(20, deadline - Date.now()));
        const ev = this.queue.find(match);
        if (ev) throw new Error(`unexpected event matching ${describePred(pred)}: ${JSON.stringify(ev)}`);
    }

    /** Removes and returns every queued event. */
    drain() { return this.queue.splice(0); }

    /** Resolves {code, reason} when the connection closes (rejects after timeoutMs). */
    async waitClose(timeoutMs = 5000) {
        if (this.closeInfo) return this.closeInfo;
        let timer;
        try {
            return await Promise.race([this.closed, new Promise((_, reject) => {
                timer = setTimeout(() => reject(new Error(`connection not closed within ${timeoutMs} ms`)), timeoutMs);
            })]);
        } finally {
            clearTimeout(timer);
        }
    }

    /** Sends obj as one JSON text frame; resolves once written. */
    send(obj) { return this.sendRaw(JSON.stringify(obj)); }

    /**
     * Sends data as is with ws' send options ({binary, fin, mask, compress}).
     * A Buffer with binary:false goes out as a text frame unchecked (invalid
     * UTF-8 tests). For byte-level frames write to .socket directly.
     */
    sendRaw(data, options = {}) {
        return new Promise((resolve, reject) => {
            this.ws.send(data, options, (err) => (err ? reject(err) : resolve()));
        });
    }

    /** Closes (code 1000 unless given) and waits for the close; terminates if it does not come. */
    async close(code = 1000, reason = '', timeoutMs = 3000) {
        if (this.closeInfo) return this.closeInfo;
        try {
            this.ws.close(code, reason);
            return await this.waitClose(timeoutMs);
        } catch {
            this.ws.terminate();
            return this.waitClose(1000).catch(() => null);
        }
    }

    terminate() { this.ws.terminate(); }
}

function buildWs(url, { headers = {}, token, tokenInQuery = false, timeoutMs = 5000, protocols, ...wsOpts }) {
    let u = url;
    const h = { ...headers };
    if (token !== undefined) {
        if (tokenInQuery) {
            const parsed = new URL(url);
            parsed.searchParams.set('token', token);
            u = parsed.toString();
        } else {
            h.Authorization = `Bearer ${token}`;
        }
    }
    return new WebSocket(u, protocols, { headers: h, handshakeTimeout: timeoutMs, ...wsOpts });
}

function readUnexpected(req, res) {
    return new Promise((resolve) => {
        const chunks = [];
        const done = () => {
            const body = Buffer.concat(chunks).toString('utf8');
            let json;
            try {
                json = JSON.parse(body);
            } catch {
                json = undefined;
            }
            req.destroy();
            resolve({ status: res.statusCode, headers: res.headers, body, json });
        };
        res.on('data', (c) => chunks.push(c));
        res.on('end', done);
        res.on('error', done);
        res.on('aborted', done);
    });
}

/**
 * Opens a WebSocket and (unless expectWelcome:false) waits for the welcome
 * event, exposed as .welcome (it is consumed from the queue). Options:
 * headers, token (sent as Authorization: Bearer, or as ?token= with
 * tokenInQuery:true), origin, protocols, timeoutMs, expectWelcome, and any
 * `ws` client option. A refused upgrade rejects with an Error carrying
 * .status, .body and .json.
 */
export async function openWs(url, opts = {}) {
    const { expectWelcome = true, timeoutMs = 5000 } = opts;
    const ws = buildWs(url, opts);
    const client = new WsClient(ws);
    await new Promise((resolve, reject) => {
        let settled = false;
        const settle = (fn, v) => { if (!settled) { settled = true; fn(v); } };
        ws.once('open', () => settle(resolve));
        ws.once('unexpected-response', async (req, res) => {
            const r = await readUnexpected(req, res);
            const err = new Error(`upgrade refused: HTTP ${r.status} ${r.body.slice(0, 300)}`);
            Object.assign(err, r);
            settle(reject, err);
        });
        ws.once('error', (e) => settle(reject, e));
        ws.once('close', (code) => settle(reject, new Error(`closed (${code}) during the handshake`)));
    });
    if (expectWelcome) {
        try {
            client.welcome = await client.next('welcome', timeoutMs);
        } catch (e) {
            client.terminate();
            throw e;
        }
    }
    return client;
}

/**
 * An upgrade that must be refused: resolves {status, headers, body, json}.
 * Throws if the upgrade succeeds. headers may include Authorization.
 */
export async function expectHttpError(url, headers = {}, { timeoutMs = 5000, ...wsOpts } = {}) {
    const ws = buildWs(url, { headers, timeoutMs, ...wsOpts });
    return new Promise((resolve, reject) => {
        let settled = false;
        const settle = (fn, v) => { if (!settled) { settled = true; fn(v); } };
        ws.on('error', (e) => settle(reject, e));
        ws.once('unexpected-response', async (req, res) => settle(resolve, await readUnexpected(req, res)));
        ws.once('open', () => {
            ws.terminate();
            settle(reject, new Error(`expected ${url} to refuse the upgrade, but it was accepted`));
        });
    });
}
