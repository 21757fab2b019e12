// The foundation: HTTP/1.1 handling of the worker (keep-alive, pipelining,
// error bodies, head limits), the master's supervision (a crashed worker is
// replaced, SIGTERM stops cleanly, SIGHUP reloads without dropping a
// request, a bad reload is refused) and the command line of chatd.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import {
    ROOT, env, freePort, httpGet, mintToken, openWs, rawRequest, startChatd, waitFor,
} from '../lib/harness.mjs';

const CHATD = path.join(ROOT, 'bin/chatd');
const uniq = (what) => `${what}-${crypto.randomBytes(4).toString('hex')}`;

// ------------------------------------------------------------ raw HTTP

/**
 * Splits a byte stream into complete HTTP responses (Content-Length
 * framing; every chatd answer has one). Returns {responses, rest} where
 * rest is the unparsed tail.
 */
function parseResponses(buf) {
    const responses = [];
    let off = 0;
    for (;;) {
        const end = buf.indexOf('\r\n\r\n', off);
        if (end < 0) break;
        const lines = buf.subarray(off, end).toString('latin1').split('\r\n');
        const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]);
        assert.ok(m, `not a status line: ${JSON.stringify(lines[0])}`);
        const headers = {};
        for (const l of lines.slice(1)) {
            const i = l.indexOf(':');
            assert.ok(i > 0, `bad header line ${JSON.stringify(l)}`);
            headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
        }
        // A 204 has no body and must not say how long it is (RFC 9110 8.6).
        const status = Number(m[1]);
        if (status === 204) assert.equal(headers['content-length'], undefined, `a 204 with a length: ${lines.join(' | ')}`);
        else assert.ok(headers['content-length'] !== undefined, `no Content-Length in ${lines.join(' | ')}`);
        const len = status === 204 ? 0 : Number(headers['content-length']);
        if (buf.length < end + 4 + len) break;
        const body = buf.subarray(end + 4, end + 4 + len).toString('utf8');
        responses.push({ status, headers, body });
        off = end + 4 + len;
    }
    return { responses, rest: buf.subarray(off) };
}

const get = (p, extra = '') => `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`;

/** One socket that sends requests one at a time and reads each answer. */
async function keepAliveClient(port) {
    const sock = net.connect({ host: '127.0.0.1', port });
    await new Promise((resolve, reject) => {
        sock.once('connect', resolve);
        sock.once('error', reject);
    });
    let buf = Buffer.alloc(0);
    let closed = false;
    let waiter = null;
    const wake = () => { if (waiter) waiter(); };
    sock.on('data', (d) => { buf = Buffer.concat([buf, d]); wake(); });
    sock.on('close', () => { closed = true; wake(); });
    sock.on('error', () => {});
    return {
        get closed() { return closed; },
        async request(bytes, timeoutMs = 5000) {
            sock.write(bytes);
            const deadline = Date.now() + timeoutMs;
            for (;;) {
                const { responses, rest } = parseResponses(buf);
                if (responses.length > 0) {
                    assert.equal(responses.length, 1, 'one answer per request');
                    buf = rest;
                    return responses[0];
                }
                if (closed) throw new Error('server closed the keep-alive connection');
                if (Date.now() > deadline) throw new Error(`no answer within ${timeoutMs} ms`);
                await new Promise((resolve) => {
                    waiter = resolve;
                    setTimeout(resolve, 100);
                });
                waiter = null;
            }
        },
        destroy() { sock.destroy(); },
    };
}

/** Checks the exact shape of an error body: {"error":{"code","message"}}. */
function assertErrorBody(body, code) {
    let json;
    assert.doesNotThrow(() => { json = JSON.parse(body); }, `error body is not JSON: ${body}`);
    assert.deepEqual(Object.keys(json), ['error'], body);
    assert.deepEqual(Object.keys(json.error).sort(), ['code', 'message'], body);
    assert.equal(json.error.code, code, body);
    assert.equal(typeof json.error.message, 'string');
    assert.ok(json.error.message.length > 0, 'a human-readable message');
}

async function assertHealthy(port) {
    const r = await httpGet(port, '/healthz');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { status: 'ok' });
}

// The heads below ask for Connection: close, so that every answer, good or
// bad, ends with the server closing.

/** A GET /healthz head of exactly `total` bytes, padded by one header. */
function headOfSize(total) {
    const start = 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Pad: ';
    const pad = total - Buffer.byteLength(`${start}\r\n\r\n`);
    assert.ok(pad >= 0);
    const head = `${start}${'p'.repeat(pad)}\r\n\r\n`;
    assert.equal(Buffer.byteLength(head), total);
    return head;
}

/** A GET /healthz head with `lines` header lines in all (Host included). */
function headWithLines(lines) {
    let h = 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n';
    for (let i = 2; i < lines; i++) h += `X-H${i}: ${i}\r\n`;
    assert.equal(h.split('\r\n').length - 2, lines);
    return `${h}\r\n`;
}

/** Sends one request on a fresh socket, reads until the server closes. */
async function rawOnce(port, bytes) {
    const buf = await rawRequest(port, bytes, { timeoutMs: 5000 });
    assert.equal(buf.timedOut, false, `no answer and no close: ${buf.toString('latin1').slice(0, 200)}`);
    return parseResponses(buf).responses;
}

// --------------------------------------------------------------- HTTP

test('HTTP: keep-alive, pipelining, error bodies, head limits', async (t) => {
    const srv = await startChatd({ t, workers: 2 });

    await t.test('GET /healthz many times on one keep-alive socket', async () => {
        const c = await keepAliveClient(srv.port);
        try {
            for (let i = 0; i < 200; i++) {
                const r = await c.request(get('/healthz'));
                assert.equal(r.status, 200, `request ${i}`);
                assert.equal(r.body, '{"status":"ok"}');
                assert.match(r.headers['content-type'], /^application\/json/);
                assert.equal(r.headers.connection, 'keep-alive');
            }
            // An error answer keeps the connection too.
            const nf = await c.request(get('/no-such-path'));
            assert.equal(nf.status, 404);
            assert.equal((await c.request(get('/healthz'))).status, 200);
            assert.equal(c.closed, false);
        } finally {
            c.destroy();
        }
    });

    await t.test('pipelined requests in one write are all answered, in order', async () => {
        const n = 300; // well over the requests a connection is served per turn
        let bytes = '';
        for (let i = 0; i < n - 1; i++) bytes += get('/healthz');
        bytes += get('/healthz', 'Connection: close\r\n');
        const buf = await rawRequest(srv.port, bytes, { timeoutMs: 10000 });
        assert.equal(buf.timedOut, false, 'the server closes after the last (Connection: close)');
        const { responses, rest } = parseResponses(buf);
        assert.equal(responses.length, n);
        assert.equal(rest.length, 0, 'nothing after the last answer');
        responses.forEach((r, i) => {
            assert.equal(r.status, 200, `response ${i}`);
            assert.equal(r.body, '{"status":"ok"}');
        });
        assert.equal(responses[n - 1].headers.connection, 'close');

        // Different answers interleaved: each comes back in its request's place.
        const paths = [];
        for (let i = 0; i < 60; i++) paths.push(['/healthz', '/nope', '/healthz', '/x/y?z=1'][i % 4]);
        const want = paths.map((p) => (p === '/healthz' ? 200 : 404));
        const mixed = await rawRequest(srv.port,
            paths.map((p) => get(p)).join('') + get('/healthz', 'Connection: close\r\n'),
            { timeoutMs: 10000 });
        const got = parseResponses(mixed).responses.map((r) => r.status);
        assert.deepEqual(got, [...want, 200]);
    });

    await t.test('unknown path: 404 JSON error', async () => {
        const r = await httpGet(srv.port, `/${uniq('nothing-here')}`);
        assert.equal(r.status, 404);
        assert.match(r.headers['content-type'], /^application\/json/);
        assertErrorBody(r.body, 'not_found');
    });

    await t.test('POST /healthz: 405 with Allow, JSON error', async () => {
        for (const method of ['POST', 'DELETE', 'PUT']) {
            const r = await httpGet(srv.port, '/healthz', { method });
            assert.equal(r.status, 405, method);
            assert.ok(r.headers.allow, 'an Allow header');
            assert.deepEqual(r.headers.allow.split(/\s*,\s*/), ['GET', 'HEAD']);
            assertErrorBody(r.body, 'method_not_allowed');
        }
        const withBody = await httpGet(srv.port, '/healthz', { method: 'POST', body: '{"a":1}',
            headers: { 'Content-Type': 'application/json' } });
        assert.equal(withBody.status, 405);
        assertErrorBody(withBody.body, 'method_not_allowed');
        await assertHealthy(srv.port);
    });

    await t.test('another method on a static file: 405 with Allow, not 404', async () => {
        for (const [method, p] of [['POST', '/'], ['DELETE', '/index.html']]) {
            const r = await httpGet(srv.port, p, { method });
            assert.equal(r.status, 405, `${method} ${p}`);
            assert.equal(r.headers.allow, 'GET, HEAD');
            assertErrorBody(r.body, 'method_not_allowed');
        }
        assert.equal((await httpGet(srv.port, '/no-such-file.html', { method: 'POST' })).status, 404);
    });

    await t.test('HEAD: the headers GET would send, never a body', async () => {
        // Two HEADs and a GET pipelined on one connection: a body after a
        // HEAD answer would be misread as the start of the next answer.
        const raw = (await rawRequest(srv.port,
            'HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n' +
            'HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n' +
            'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toString('latin1');
        const heads = raw.split('\r\n\r\n');
        assert.match(heads[0], /^HTTP\/1\.1 200 /);
        assert.match(heads[0], /content-length: 15/i);
        assert.match(heads[1], /^HTTP\/1\.1 404 /, 'the 404 head follows the first head directly');
        assert.match(heads[2], /^HTTP\/1\.1 200 /, 'the GET answer follows the 404 head directly');
        assert.equal(heads[3], '{"status":"ok"}');
    });

    await t.test('garbage head: 400 JSON, connection closed', async () => {
        const heads = [
            'garbage\r\n\r\n',
            'GET /healthz\r\n\r\n',
            'GET  /healthz HTTP/1.1\r\n\r\n',
            'GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n',
            'GET /healthz HTTP/1.1\r\nNo colon here\r\n\r\n',
            'GET /healthz HTTP/1.1\r\nBad Name: x\r\n\r\n',
            'GET /healthz HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n',
            Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x0d, 0x0a, 0x0d, 0x0a]),
        ];
        for (const h of heads) {
            const responses = await rawOnce(srv.port, h);
            assert.equal(responses.length, 1, `one answer to ${JSON.stringify(h.toString())}`);
            assert.equal(responses[0].status, 400, JSON.stringify(h.toString()));
            assert.equal(responses[0].headers.connection, 'close');
            assertErrorBody(responses[0].body, 'bad_request');
            await assertHealthy(srv.port);
        }
    });

    await t.test('framing and Host: a head two readers could read differently is a 400', async () => {
        const bad = [
            // A front proxy that frames by the second length would forward
            // the next request as this one's body.
            'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 25\r\n\r\n' +
                'GET /metrics HTTP/1.1\r\n\r\n',
            'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n',
            'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n',
            'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n',
            'GET /healthz HTTP/1.1\r\n\r\n',
            'GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
            'GET /healthz HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n',
        ];
        for (const h of bad) {
            const responses = await rawOnce(srv.port, h);
            assert.equal(responses.length, 1, `one answer to ${JSON.stringify(h)}`);
            assert.equal(responses[0].status, 400, JSON.stringify(h));
            assert.equal(responses[0].headers.connection, 'close');
            assertErrorBody(responses[0].body, 'bad_request');
        }
        // HTTP/1.0 needs no Host; one length sent twice is still one length.
        for (const h of ['GET /healthz HTTP/1.0\r\n\r\n',
            get('/healthz', 'Content-Length: 0\r\nContent-Length: 0\r\nConnection: close\r\n')]) {
            const responses = await rawOnce(srv.port, h);
            assert.deepEqual(responses.map((r) => r.status), [200], JSON.stringify(h));
        }
        await assertHealthy(srv.port);
    });

    await t.test('Connection and its options: lines of one name are one list; a 204 has no length', async () => {
        // close on a second line still closes (the read ends: no timeout)
        const r = await rawOnce(srv.port, get('/healthz', 'Connection: keep-alive\r\nConnection: close\r\n'));
        assert.deepEqual(r.map((x) => x.status), [200]);
        assert.equal(r[0].headers.connection, 'close');
        const opts = await rawOnce(srv.port, 'OPTIONS /api/users HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        assert.deepEqual(opts.map((x) => x.status), [204]);
    });

    await t.test('head size limit: 8192 bytes accepted, 8193 is 431', async () => {
        const ok = await rawOnce(srv.port, headOfSize(8192));
        assert.equal(ok.length, 1);
        assert.equal(ok[0].status, 200);
        assert.equal(ok[0].body, '{"status":"ok"}');
        // The limit is on the head, not on each read: the same head in pieces.
        const pieces = headOfSize(8192).match(/[\s\S]{1,1000}/g);
        const split = parseResponses(await rawRequest(srv.port, pieces, { gapMs: 5 })).responses;
        assert.deepEqual(split.map((r) => r.status), [200]);

        for (const size of [8193, 9000]) {
            const r = await rawOnce(srv.port, headOfSize(size));
            assert.equal(r.length, 1, `one answer to a ${size}-byte head`);
            assert.equal(r[0].status, 431, `${size}-byte head`);
            assertErrorBody(r[0].body, 'too_large');
            await assertHealthy(srv.port);
        }
        // A head that never ends is refused once it passes the limit.
        const endless = `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'q'.repeat(8200)}`;
        const r = parseResponses(await rawRequest(srv.port, endless, { timeoutMs: 5000 })).responses;
        assert.deepEqual(r.map((x) => x.status), [431]);
        await assertHealthy(srv.port);
    });

    await t.test('header line limit: 100 accepted, 101 is 431', async () => {
        const ok = await rawOnce(srv.port, headWithLines(100));
        assert.equal(ok.length, 1);
        assert.equal(ok[0].status, 200);
        for (const lines of [101, 150]) {
            const r = await rawOnce(srv.port, headWithLines(lines));
            assert.equal(r.length, 1);
            assert.equal(r[0].status, 431, `${lines} header lines`);
            assertErrorBody(r[0].body, 'too_large');
            await assertHealthy(srv.port);
        }
    });
});

/**
 * Sends `first`, waits for the server's answer and its FIN, then sends
 * `more` and closes: what a client still uploading sees when the answer
 * comes early. Resolves with the bytes read and the socket error, if any.
 */
async function answerThenMore(port, first, more) {
    const sock = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
    const chunks = [];
    let fin = false;
    let closed = false;
    let error;
    sock.on('data', (d) => chunks.push(d));
    sock.on('end', () => { fin = true; });
    sock.on('close', () => { closed = true; });
    sock.on('error', (e) => { error ??= e; });
    try {
        sock.write(first);
        await waitFor(() => fin || closed, 5000, 10, 'the answer and the server\'s FIN');
        if (!closed) {
            await new Promise((resolve) => sock.write(more, resolve));
            sock.end();
        }
        await waitFor(() => closed, 8000, 10, 'the connection to close');
    } finally {
        sock.destroy();
    }
    return { got: Buffer.concat(chunks), error };
}

test('HTTP: closing gently', async (t) => {
    const srv = await startChatd({ t, workers: 1 });

    // Closing a socket with input still unread sends RST instead of FIN:
    // the answer's bytes not yet acknowledged are thrown away with it,
    // and a client still sending (an upload, the rest of a head) fails
    // its next write and may never read the answer. The server sends its
    // FIN instead and reads on until the client is done too.
    await t.test('a refused head: the answer, then FIN; the client may finish sending', async () => {
        const r = await answerThenMore(srv.port,
            `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'q'.repeat(65536)}`, 'q'.repeat(65536));
        assert.equal(r.error, undefined, `the client's late bytes are taken, not reset (${r.error?.code})`);
        assert.deepEqual(parseResponses(r.got).responses.map((x) => x.status), [431]);
        await assertHealthy(srv.port);
    });

    await t.test('a body still arriving when the answer closes: FIN, the upload may finish', async () => {
        const head = `POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: ${2 * 65536}\r\n\r\n`;
        const r = await answerThenMore(srv.port, head + 'b'.repeat(65536), 'b'.repeat(65536));
        assert.equal(r.error, undefined, `the rest of the upload is taken, not reset (${r.error?.code})`);
        const answers = parseResponses(r.got).responses;
        assert.deepEqual(answers.map((x) => x.status), [405]);
        assert.equal(answers[0].headers.connection, 'close');
    });

    await t.test('a client that keeps sending after the answer is closed on in time', async () => {
        const sock = net.connect({ host: '127.0.0.1', port: srv.port, allowHalfOpen: true });
        await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
        let got = '';
        let fin = false;
        let closed = false;
        sock.on('data', (d) => { got += d.toString('latin1'); });
        sock.on('end', () => { fin = true; });
        sock.on('close', () => { closed = true; });
        sock.on('error', () => {});
        sock.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'q'.repeat(9000)}`);
        await waitFor(() => fin, 5000, 20, 'the server\'s FIN');
        assert.match(got, /^HTTP\/1\.1 431 /);
        // Half-open, the connection is still the server's to close: a
        // trickle of bytes does not hold it past the linger time.
        const trickle = setInterval(() => { if (!closed) sock.write('z'); }, 200);
        try {
            await waitFor(() => closed, 9000, 50, 'the server to close the lingering connection');
        } finally {
            clearInterval(trickle);
            sock.destroy();
        }
    });

    await t.test('a client that half-closes after its requests still gets every answer', async () => {
        const token = srv.token({ sub: uniq('half'), role: 'member' });
        const room = uniq('room');
        const history = `GET /api/chat/messages?room=${room} HTTP/1.1\r\nHost: x\r\n` +
            `Authorization: Bearer ${token}\r\n\r\n`;
        const users = `GET /api/users?room=${room} HTTP/1.1\r\nHost: x\r\n` +
            `Authorization: Bearer ${token}\r\n\r\n`;
        for (let i = 0; i < 5; i++) {
            // Answered from PostgreSQL and from Redis, after the FIN came.
            const buf = await rawRequest(srv.port, get('/healthz') + history + users + get('/healthz'),
                { end: true, timeoutMs: 5000 });
            assert.equal(buf.timedOut, false, 'the server closes once all is answered');
            const r = parseResponses(buf).responses;
            assert.deepEqual(r.map((x) => x.status), [200, 200, 200, 200], `round ${i}`);
            assert.equal(JSON.parse(r[1].body).room, room);
            assert.equal(JSON.parse(r[2].body).room, room);
        }
        // Half a head, then the FIN: nothing to answer, the server just closes.
        const part = await rawRequest(srv.port, 'GET /healthz HTTP/1.1\r\nHo', { end: true, timeoutMs: 5000 });
        assert.equal(part.timedOut, false);
        assert.equal(part.length, 0);
    });
});

// ---------------------------------------------------------- supervision

/** Fresh-connection GET /healthz in a loop until stopped; counts results. */
function hammer(port, loops = 2) {
    const stats = { ok: 0, failed: 0, errors: [] };
    let running = true;
    const one = async () => {
        while (running) {
            try {
                const r = await httpGet(port, '/healthz', { timeoutMs: 10000 });
                if (r.status === 200) stats.ok++;
                else {
                    stats.failed++;
                    stats.errors.push(`status ${r.status} ${r.body}`);
                }
            } catch (e) {
                stats.failed++;
                stats.errors.push(e.code || e.message);
            }
        }
    };
    const done = Promise.all(Array.from({ length: loops }, one));
    stats.stop = async () => {
        running = false;
        await done;
        return stats;
    };
    return stats;
}

/** The statuses of n fresh-connection GET /healthz at once; a failure gives its message. */
function healthzBurst(port, n, timeoutMs) {
    return Promise.all(Array.from({ length: n }, () => httpGet(port, '/healthz', { timeoutMs })
        .then((r) => r.status, (e) => e.message)));
}

/** Waits until a burst of 20 requests all succeed. */
function untilEveryRequestSucceeds(srv, timeoutMs, what) {
    return waitFor(async () => (await healthzBurst(srv.port, 20, 1000)).every((st) => st === 200),
        timeoutMs, 50, what);
}

/** The pids of the two workers, once both are up. */
function twoWorkers(srv) {
    return waitFor(() => (srv.children().length === 2 ? srv.children() : null), 5000, 50, 'two workers');
}

test('a killed worker is replaced and the server keeps answering', async (t) => {
    const srv = await startChatd({ t, workers: 2 });
    const before = await twoWorkers(srv);
    const victim = before[0];
    const survivor = before[1];
    process.kill(victim, 'SIGKILL');
    // Requests made right away succeed: the master keeps the victim's
    // listening socket, and its successor takes what queued there.
    assert.deepEqual(await healthzBurst(srv.port, 10, 10000), Array(10).fill(200));

    const after = await waitFor(() => {
        const now = srv.children();
        return now.length === 2 && !now.includes(victim) ? now : null;
    }, 5000, 20, 'a new worker replaces the killed one');
    assert.ok(after.includes(survivor), 'the other worker was left alone');
    const replacement = after.find((p) => p !== survivor);
    assert.notEqual(replacement, victim);

    await untilEveryRequestSucceeds(srv, 2000, 'every request succeeds again');
    assert.match(srv.logs(), new RegExp(`worker died slot=\\d+ pid=${victim} signal=KILL`));
    assert.match(srv.logs(), new RegExp(`worker started slot=\\d+ pid=${replacement}`));
    // Still two workers, and the master is fine.
    assert.deepEqual(srv.children().sort(), after.sort());
    assert.equal(srv.exitInfo, null);
});

test('a worker that keeps crashing: its slot stops taking connections while it waits to restart', async (t) => {
    const srv = await startChatd({ t, workers: 2 });
    const first = await twoWorkers(srv);
    const survivor = first[1];
    // Killed as soon as it starts, each time: every fast failure doubles
    // the wait before the next start (100 ms, 200, ... 3200 after six).
    let victim = first[0];
    for (let i = 1; i <= 6; i++) {
        process.kill(victim, 'SIGKILL');
        if (i === 6) break;
        const gone = victim;
        victim = await waitFor(() => srv.children().find((p) => p !== survivor && p !== gone), 10000, 5,
            `restart ${i}`);
    }
    await waitFor(() => /restarts in 3200 ms/.test(srv.logs()), 5000, 10, 'the sixth back-off');
    // Meanwhile the kernel would still queue about half of the new
    // connections on the waiting slot's socket, where nobody accepts:
    // closed, it leaves them all to the slot that serves.
    assert.deepEqual(await healthzBurst(srv.port, 40, 2000), Array(40).fill(200));
    assert.match(srv.logs(), /slot=\d+ stops listening until its worker restarts/);
    // The slot comes back with a socket of its own and takes its share.
    const back = await waitFor(() => {
        const now = srv.children();
        return now.length === 2 && now.every((p) => p !== victim) ? now.find((p) => p !== survivor) : null;
    }, 10000, 20, 'the slot\'s worker after its back-off');
    await untilEveryRequestSucceeds(srv, 5000, 'every request succeeds with both slots');
    assert.deepEqual(srv.children().sort(), [survivor, back].sort());
    assert.equal(srv.exitInfo, null);
});

test('SIGTERM: graceful stop, exit 0, pid file removed', async (t) => {
    const drainS = 3;
    const srv = await startChatd({ t, workers: 2, env: { CHAT_DRAIN_TIMEOUT_S: drainS } });
    assert.equal(fs.readFileSync(srv.pidFile, 'utf8').trim(), String(srv.pid));
    const room = uniq('term');
    const ws = await openWs(srv.wsUrl(`/api/chat?room=${room}`),
        { token: mintToken(srv.secret, { sub: 'u1', role: 'member' }) });
    const workers = srv.children();
    assert.equal(workers.length, 2);

    srv.kill('SIGTERM');
    const closed = await ws.waitClose(drainS * 1000 + 5000);
    assert.equal(closed.code, 1001, 'open sockets are told the server is going away');
    const exit = await srv.waitExit(drainS * 1000 + 5000);
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.equal(fs.existsSync(srv.pidFile), false, 'pid file removed');
    for (const p of workers) {
        assert.throws(() => process.kill(p, 0), { code: 'ESRCH' }, `worker ${p} is gone`);
    }
    assert.match(srv.logs(), /all workers stopped; master exits/);
});

test('SIGHUP: reload without a failed request; a bad reload is refused', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-reload-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const conf = path.join(dir, 'chatd.conf');
    const writeConf = (lines) => fs.writeFileSync(conf, `# written by foundation.test.mjs\n${lines.join('\n')}\n`);
    writeConf(['max_text_chars = 2000', 'drain_timeout_s = 2']);
    const srv = await startChatd({ t, workers: 2, args: ['-c', conf] });
    const token = mintToken(srv.secret, { sub: 'u1', role: 'member' });
    const room = uniq('reload');
    const url = srv.wsUrl(`/api/chat?room=${room}`);

    /** Sends a 10-character message on a new connection; returns the reply. */
    const sendTen = async (ref) => {
        const c = await openWs(url, { token });
        try {
            await c.send({ type: 'message', text: '0123456789', ref });
            return await c.next((e) => e.ref === ref && (e.type === 'ack' || e.type === 'error'), 10000);
        } finally {
            await c.close();
        }
    };
    const reloadsFinished = () => (srv.logs().match(/reload finished/g) || []).length;

    assert.equal((await sendTen('before')).type, 'ack', 'accepted before the reload');
    const oldWorkers = srv.children();
    assert.equal(oldWorkers.length, 2);

    // A good reload while a client hammers /healthz with new connections.
    const load = hammer(srv.port);
    await waitFor(() => load.ok >= 20, 10000, 20, 'the hammer is running');
    writeConf(['max_text_chars = 5', 'drain_timeout_s = 2']);
    srv.kill('SIGHUP');
    await waitFor(() => reloadsFinished() === 1, 30000, 50, 'reload finished');
    await waitFor(() => {
        const now = srv.children();
        return now.length === 2 && now.every((p) => !oldWorkers.includes(p));
    }, 15000, 50, 'the old workers are gone, two new ones run');
    const okAtReload = load.ok;
    await waitFor(() => load.ok >= okAtReload + 50, 15000, 20, 'requests after the reload');
    const stats = await load.stop();
    assert.equal(stats.failed, 0, `failed requests during the reload: ${stats.errors.slice(0, 10).join(', ')}`);
    assert.match(srv.logs(), /reload: settings accepted/);

    const after = await sendTen('after');
    assert.equal(after.type, 'error', `a 10-character text with max_text_chars = 5: ${JSON.stringify(after)}`);
    assert.equal(after.code, 'too_long');
    const newWorkers = srv.children();

    // Bad files: refused, the old workers keep serving with the old settings.
    const bad = [
        [['max_text_chars = 2000', 'port = abc'], /reload rejected, old workers keep serving: .*port/],
        [['max_text_chars = 2000', 'max_text_charz = 7'], /reload rejected, old workers keep serving: .*max_text_charz/],
        [['max_text_chars = 2000', 'instance_name = other'], /reload rejected, old workers keep serving: .*instance_name/],
    ];
    for (const [lines, logLine] of bad) {
        const load2 = hammer(srv.port, 1);
        await waitFor(() => load2.ok >= 5, 10000, 20, 'the hammer is running');
        writeConf(lines);
        srv.kill('SIGHUP');
        await waitFor(() => logLine.test(srv.logs()), 10000, 50, `log line ${logLine}`);
        const at = load2.ok;
        await waitFor(() => load2.ok >= at + 20, 10000, 20, 'requests after the refused reload');
        const s2 = await load2.stop();
        assert.equal(s2.failed, 0, `failed requests: ${s2.errors.slice(0, 10).join(', ')}`);
        assert.deepEqual(srv.children().sort(), [...newWorkers].sort(), 'no worker was replaced');
        assert.equal(reloadsFinished(), 1);
        const r = await sendTen(uniq('bad'));
        assert.equal(r.code, 'too_long', `the old max_text_chars (5) is still in effect: ${JSON.stringify(r)}`);
    }

    // The refusals left the master able to reload.
    writeConf(['max_text_chars = 2000', 'drain_timeout_s = 2']);
    srv.kill('SIGHUP');
    await waitFor(() => reloadsFinished() === 2, 30000, 50, 'second reload finished');
    await waitFor(() => srv.children().length === 2 && srv.children().every((p) => !newWorkers.includes(p)),
        15000, 50, 'second generation of workers');
    assert.equal((await sendTen('again')).type, 'ack', 'max_text_chars back to 2000');
    assert.equal(srv.exitInfo, null);
});

// ---------------------------------------------------------- command line

/**
 * Runs bin/chatd with exactly the given CHAT_ variables (none inherited)
 * and resolves {code, signal, stdout, stderr}. A chatd that is still
 * running after timeoutMs (it started when it should not have) is killed
 * with its workers, and resolves with timedOut: true.
 */
function runChatd(args, chatEnv = {}, timeoutMs = 10000) {
    const base = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CHAT_')) base[k] = v;
    return new Promise((resolve) => {
        const child = spawn(CHATD, args, {
            cwd: ROOT, env: { ...base, ...chatEnv }, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        let timedOut = false;
        child.stdout.on('data', (d) => { stdout += d; });
        child.stderr.on('data', (d) => { stderr += d; });
        const timer = setTimeout(() => {
            timedOut = true;
            try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
        }, timeoutMs);
        child.on('close', (code, signal) => {
            clearTimeout(timer);
            resolve({ code, signal, stdout, stderr, timedOut });
        });
    });
}

test('command line: --check-config, --help, --version, bad usage and settings', async (t) => {
    const secret = `s3cr3t-${crypto.randomBytes(8).toString('hex')}`;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-cli-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const conf = path.join(dir, 'c.conf');
    fs.writeFileSync(conf, 'max_text_chars = 77\nredis_prefix = fromfile:\nport = 1111\n');

    await t.test('--check-config prints the settings with secrets masked', async () => {
        const r = await runChatd(['--check-config', '-c', conf], {
            CHAT_JWT_SECRET: secret,
            CHAT_PORT: '4321',
            CHAT_PG_DSN: 'postgresql://chat:pgpass123@127.0.0.1:15432/chat_test',
            CHAT_REDIS_URL: 'redis://:redispass456@127.0.0.1:16379/0',
        });
        assert.equal(r.code, 0, r.stderr);
        const settings = {};
        for (const line of r.stdout.split('\n')) {
            const m = /^([a-z_]+) = (.*)$/.exec(line);
            if (m) settings[m[1]] = m[2];
        }
        assert.equal(settings.jwt_secret, '********');
        assert.ok(!r.stdout.includes(secret), 'the secret is not printed');
        assert.ok(!r.stdout.includes('pgpass123'), 'the PostgreSQL password is not printed');
        assert.ok(!r.stdout.includes('redispass456'), 'the Redis password is not printed');
        assert.equal(settings.max_text_chars, '77', 'from the file');
        assert.equal(settings.redis_prefix, 'fromfile:', 'from the file');
        assert.equal(settings.port, '4321', 'the environment overrides the file');
        assert.equal(settings.rate_burst, '10', 'a default');
        for (const key of ['bind', 'workers', 'redis_url', 'pg_dsn', 'drain_timeout_s', 'log_level']) {
            assert.ok(key in settings, `${key} is printed`);
        }
        // Flags override the environment.
        const f = await runChatd(['--check-config', '-c', conf, '--port', '5555', '--workers', '3'],
            { CHAT_JWT_SECRET: secret, CHAT_PORT: '4321' });
        assert.equal(f.code, 0, f.stderr);
        assert.match(f.stdout, /^port = 5555$/m);
        assert.match(f.stdout, /^workers = 3$/m);
    });

    await t.test('--help and --version exit 0', async () => {
        const h = await runChatd(['--help']);
        assert.equal(h.code, 0, h.stderr);
        assert.match(h.stdout, /usage: chatd/);
        assert.match(h.stdout, /max_text_chars/);
        assert.match(h.stdout, /CHAT_JWT_SECRET/);
        const v = await runChatd(['--version']);
        assert.equal(v.code, 0, v.stderr);
        assert.match(v.stdout, /^chatd \d+\.\d+\.\d+\S*\n$/);
    });

    await t.test('bad usage exits 2', async () => {
        for (const args of [['--bogus'], ['--port'], ['-z'], ['extra-argument']]) {
            const r = await runChatd(args, { CHAT_JWT_SECRET: secret });
            assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
            assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
            assert.ok(r.stderr.includes(args[0]), `names ${args[0]}: ${r.stderr}`);
        }
    });

    await t.test('unknown CHAT_ variable or bad value exits 1 naming it', async () => {
        const port = String(await freePort());
        const base = { CHAT_JWT_SECRET: secret, CHAT_PORT: port, CHAT_REDIS_URL: env.redisUrl,
            CHAT_PG_DSN: env.pgTestDsn, CHAT_WORKERS: '1' };
        const cases = [
            [{ CHAT_PROT: '8080' }, /CHAT_PROT/],
            [{ CHAT_PORT: 'abc' }, /CHAT_PORT\b.*'abc'/],
            [{ CHAT_PORT: '70000' }, /CHAT_PORT\b.*'70000'/],
            [{ CHAT_MAX_TEXT_CHARS: '0' }, /CHAT_MAX_TEXT_CHARS\b/],
            [{ CHAT_LOG_LEVEL: 'loud' }, /CHAT_LOG_LEVEL\b.*'loud'/],
            [{ CHAT_JWT_SECRET: '' }, /jwt_secret/i],
        ];
        for (const [vars, names] of cases) {
            for (const args of [['--check-config'], []]) {
                const r = await runChatd(args, { ...base, ...vars });
                const what = `${JSON.stringify(vars)} ${args.join(' ')}`;
                assert.equal(r.timedOut, false, `${what}: chatd started instead of refusing`);
                assert.equal(r.code, 1, `${what}: ${r.stderr}`);
                assert.match(r.stderr, names, what);
                assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
            }
        }
        // A bad file names the file, the line and the key.
        const badConf = path.join(dir, 'bad.conf');
        fs.writeFileSync(badConf, '# comment\nmax_text_chars = 10\nmax_text_charz = 10\n');
        const r = await runChatd(['-c', badConf, '--check-config'], { CHAT_JWT_SECRET: secret });
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /bad\.conf:3: .*max_text_charz/);
        const missing = await runChatd(['-c', path.join(dir, 'missing.conf'), '--check-config'],
            { CHAT_JWT_SECRET: secret });
        assert.equal(missing.code, 1, missing.stderr);
        assert.match(missing.stderr, /missing\.conf/);
    });
});
