// The WebSocket endpoint (RFC 6455 over libevent): the handshake, access
// control before the upgrade, control frames, protocol errors and their
// close codes, fragmentation, frame sizes, many connections, liveness
// pings, slow consumers, graceful stop, and an independent client
// (libwebsockets, tests/progs/lws_client.c).
//
// Node's `ws` cannot produce malformed frames, so those tests speak raw
// TCP with hand-built masked frames (RawWs below).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
    ROOT, expectHttpError, httpGet, mintToken, nowSec, openWs, rawRequest, redisCli, sleep, startChatd, waitFor,
} from '../lib/harness.mjs';

const uniq = (p = 'ws') => `${p}-${crypto.randomBytes(4).toString('hex')}`;

// ------------------------------------------------------- raw HTTP and frames

/** A request head; headers whose value is undefined are left out. */
function requestHead(port, reqPath, headers) {
    const lines = [`GET ${reqPath} HTTP/1.1`, `Host: 127.0.0.1:${port}`];
    for (const [k, v] of Object.entries(headers)) if (v !== undefined) lines.push(`${k}: ${v}`);
    return `${lines.join('\r\n')}\r\n\r\n`;
}

/** A valid upgrade's headers, with overrides (undefined removes one). */
function upgradeHeaders(over = {}) {
    return {
        Upgrade: 'websocket',
        Connection: 'Upgrade',
        'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
        'Sec-WebSocket-Version': '13',
        ...over,
    };
}

/** Parses an HTTP response at the start of buf: {complete, status, headers, body, json, rest}. */
function parseResponse(buf) {
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return { complete: false };
    const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(lines[0])?.[1]);
    const headers = {};
    for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        const k = l.slice(0, i).trim().toLowerCase();
        const v = l.slice(i + 1).trim();
        headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
    }
    const bodyStart = end + 4;
    const len = status === 101 ? 0 : Number(headers['content-length'] ?? 0);
    if (buf.length < bodyStart + len) return { complete: false };
    const body = buf.subarray(bodyStart, bodyStart + len).toString('utf8');
    let json;
    try {
        json = JSON.parse(body);
    } catch {
        json = undefined;
    }
    return { complete: true, status, headers, body, json, rest: buf.subarray(bodyStart + len) };
}

/** One raw request; resolves with the parsed response. */
async function rawHttp(port, head) {
    const buf = await rawRequest(port, head, { until: (b) => parseResponse(b).complete, timeoutMs: 5000 });
    const r = parseResponse(buf);
    assert.ok(r.complete, `no complete response to ${JSON.stringify(head.slice(0, 200))}: ${buf.toString('latin1')}`);
    return r;
}

/** A client frame: masked unless mask:false; rsv is the 3 RSV bits. */
function frame(opcode, payload = Buffer.alloc(0), { fin = true, mask = true, rsv = 0 } = {}) {
    const data = Buffer.from(payload);
    const n = data.length;
    let head;
    if (n < 126) {
        head = Buffer.from([0, n]);
    } else if (n < 65536) {
        head = Buffer.alloc(4);
        head[1] = 126;
        head.writeUInt16BE(n, 2);
    } else {
        head = Buffer.alloc(10);
        head[1] = 127;
        head.writeBigUInt64BE(BigInt(n), 2);
    }
    head[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
    if (!mask) return Buffer.concat([head, data]);
    head[1] |= 0x80;
    const key = crypto.randomBytes(4);
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = data[i] ^ key[i & 3];
    return Buffer.concat([head, key, out]);
}

const OP = { CONT: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 };
const closePayload = (code, reason = '') => {
    const b = Buffer.alloc(2 + Buffer.byteLength(reason));
    b.writeUInt16BE(code, 0);
    b.write(reason, 2);
    return b;
};

/**
 * A WebSocket client on a plain socket: writes whatever bytes it is given
 * and parses what the server sends into frames. Every server frame is
 * checked to be unmasked (a server must not mask).
 */
class RawWs {
    /** Upgrades; `after`: bytes written in the same packet as the request. */
    static open(port, reqPath, headers = {}, { timeoutMs = 5000, after, allowHalfOpen = false } = {}) {
        return new Promise((resolve, reject) => {
            const sock = net.connect({ host: '127.0.0.1', port, allowHalfOpen });
            let buf = Buffer.alloc(0);
            const timer = setTimeout(() => {
                sock.destroy();
                reject(new Error(`no upgrade response within ${timeoutMs} ms`));
            }, timeoutMs);
            const onData = (d) => {
                buf = Buffer.concat([buf, d]);
                const r = parseResponse(buf);
                if (!r.complete) return;
                clearTimeout(timer);
                sock.off('data', onData);
                if (r.status !== 101) {
                    sock.destroy();
                    reject(Object.assign(new Error(`upgrade refused: ${r.status} ${r.body}`), r));
                    return;
                }
                resolve(new RawWs(sock, r));
            };
            sock.on('data', onData);
            sock.once('error', (e) => { clearTimeout(timer); reject(e); });
            const head = Buffer.from(requestHead(port, reqPath, upgradeHeaders(headers)));
            sock.write(after ? Buffer.concat([head, after]) : head);
        });
    }

    constructor(sock, response) {
        this.sock = sock;
        this.response = response;
        this.buf = Buffer.alloc(0);
        this.frames = [];     // every frame, in order
        this.queue = [];      // frames not yet taken by next()
        this.waiters = [];
        this.maskedFrames = 0;
        this.bytesRead = 0;
        this.endInfo = null;
        this.ended = new Promise((resolve) => {
            const end = (error) => {
                if (this.endInfo) return;
                this.endInfo = { error };
                for (const w of this.waiters.splice(0)) {
                    clearTimeout(w.timer);
                    w.reject(new Error(`connection ended (${error?.code ?? 'EOF'}) while waiting for ${w.desc}; ` +
                        `frames: ${this.describe()}`));
                }
                resolve(this.endInfo);
            };
            sock.on('close', () => end(undefined));
            sock.on('end', () => end(undefined));
            sock.on('error', (e) => end(e));
        });
        sock.on('data', (d) => this.feed(d));
        if (response.rest.length) this.feed(response.rest);
    }

    feed(d) {
        this.bytesRead += d.length;
        this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
        for (;;) {
            const b = this.buf;
            if (b.length < 2) return;
            const masked = (b[1] & 0x80) !== 0;
            let len = b[1] & 0x7f;
            let off = 2;
            if (len === 126) {
                if (b.length < 4) return;
                len = b.readUInt16BE(2);
                off = 4;
            } else if (len === 127) {
                if (b.length < 10) return;
                len = Number(b.readBigUInt64BE(2));
                off = 10;
            }
            if (masked) off += 4;
            if (b.length < off + len) return;
            const f = {
                fin: (b[0] & 0x80) !== 0, rsv: (b[0] >> 4) & 7, opcode: b[0] & 0x0f,
                payload: Buffer.from(b.subarray(off, off + len)),
            };
            if (masked) this.maskedFrames++;
            if (f.opcode === OP.CLOSE) {
                f.code = len >= 2 ? f.payload.readUInt16BE(0) : 1005;
                f.reason = len > 2 ? f.payload.subarray(2).toString('utf8') : '';
            }
            this.buf = b.subarray(off + len);
            this.frames.push(f);
            const i = this.waiters.findIndex((w) => w.match(f));
            if (i >= 0) {
                const [w] = this.waiters.splice(i, 1);
                clearTimeout(w.timer);
                w.resolve(f);
            } else {
                this.queue.push(f);
            }
        }
    }

    describe() {
        const s = this.frames.map((f) => (f.opcode === OP.CLOSE ? `close(${f.code})`
            : f.opcode === OP.TEXT ? f.payload.toString('utf8').slice(0, 80) : `op${f.opcode}`)).join(' | ');
        return s.length > 800 ? `${s.slice(0, 800)}...` : s;
    }

    /** The next frame matching match(frame); non-matching frames stay queued. */
    next(match = () => true, desc = 'a frame', timeoutMs = 5000) {
        const i = this.queue.findIndex(match);
        if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0]);
        if (this.endInfo) return Promise.reject(new Error(`connection ended before ${desc}; frames: ${this.describe()}`));
        return new Promise((resolve, reject) => {
            const w = { match, resolve, reject, desc };
            w.timer = setTimeout(() => {
                this.waiters.splice(this.waiters.indexOf(w), 1);
                reject(new Error(`no ${desc} within ${timeoutMs} ms; frames: ${this.describe()}`));
            }, timeoutMs);
            this.waiters.push(w);
        });
    }

    /** The next text frame whose JSON has the given type (and fields). */
    async json(type, fields = {}, timeoutMs = 5000) {
        const f = await this.next((fr) => {
            if (fr.opcode !== OP.TEXT) return false;
            try {
                const m = JSON.parse(fr.payload.toString('utf8'));
                return m.type === type && Object.entries(fields).every(([k, v]) => m[k] === v);
            } catch {
                return false;
            }
        }, `a ${type} ${JSON.stringify(fields)}`, timeoutMs);
        return JSON.parse(f.payload.toString('utf8'));
    }

    closeFrame(timeoutMs = 5000) { return this.next((f) => f.opcode === OP.CLOSE, 'close frame', timeoutMs); }

    /** Waits for the server to close the TCP connection. */
    async waitEnd(timeoutMs = 5000) {
        await waitFor(() => this.endInfo, timeoutMs, 20, `the server to close the connection; frames: ${this.describe()}`);
        return this.endInfo;
    }

    write(bytes) {
        return new Promise((resolve) => {
            if (this.sock.destroyed) { resolve(); return; }
            this.sock.write(bytes, () => resolve());
        });
    }

    send(opcode, payload, opts) { return this.write(frame(opcode, payload, opts)); }
    sendJson(obj) { return this.send(OP.TEXT, JSON.stringify(obj)); }
    destroy() { this.sock.destroy(); }
}

/**
 * Sends bytes on a fresh connection and expects the server to close it with
 * code, and then to end the TCP connection.
 */
async function expectCloseCode(srv, room, bytes, code, what) {
    const c = await RawWs.open(srv.port, `/api/chat?room=${room}`,
        { Authorization: `Bearer ${srv.token({ sub: uniq('raw'), role: 'member' })}` });
    try {
        await c.json('welcome');
        await c.write(bytes);
        const f = await c.closeFrame();
        assert.equal(f.code, code, `${what}: close code (reason "${f.reason}")`);
        await c.waitEnd();
        assert.equal(c.maskedFrames, 0, 'server frames are never masked');
        return f;
    } finally {
        c.destroy();
    }
}

async function metric(srv, name) {
    const r = await httpGet(srv.port, '/metrics');
    assert.equal(r.status, 200);
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+(?:\\.\\d+)?)$`, 'm').exec(r.body);
    assert.ok(m, `metric ${name} in /metrics`);
    return Number(m[1]);
}

const ok200 = (srv) => httpGet(srv.port, '/healthz').then((r) => r.status === 200);

// ------------------------------------------------------- the main server

const MAX_FRAME = 4096;

test('websocket endpoint', async (t) => {
    const srv = await startChatd({
        t, workers: 2,
        env: { CHAT_MAX_FRAME_BYTES: MAX_FRAME, CHAT_ALLOWED_ORIGINS: 'http://good.example' },
    });
    const member = (sub = uniq('u')) => srv.token({ sub, name: sub, role: 'member' });
    const bearer = (sub) => ({ Authorization: `Bearer ${member(sub)}` });

    // ---------------------------------------------------------- handshake

    await t.test('handshake: the RFC 6455 example key gets the RFC accept value', async () => {
        const c = await RawWs.open(srv.port, `/api/chat?room=${uniq()}`,
            { 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', ...bearer() });
        try {
            assert.equal(c.response.status, 101);
            assert.equal(c.response.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
            assert.match(c.response.headers.upgrade, /^websocket$/i);
            assert.match(c.response.headers.connection, /\bupgrade\b/i);
            const w = await c.json('welcome');
            assert.equal(typeof w.conn_id, 'string');
        } finally {
            c.destroy();
        }
    });

    await t.test('handshake: the 101 leaves with the welcome, in one write', async () => {
        const sock = net.connect({ host: '127.0.0.1', port: srv.port });
        try {
            const first = await new Promise((resolve, reject) => {
                const timer = setTimeout(() => reject(new Error('no response within 5 s')), 5000);
                sock.once('data', (d) => { clearTimeout(timer); resolve(d); });
                sock.once('error', reject);
                sock.write(requestHead(srv.port, `/api/chat?room=${uniq()}`, upgradeHeaders(bearer())));
            });
            const r = parseResponse(first);
            assert.ok(r.complete, `first read: ${first.toString('latin1')}`);
            assert.equal(r.status, 101);
            // A whole unmasked text frame follows in the same segment.
            assert.ok(r.rest.length >= 2, `the first read held the 101 alone (${first.length} bytes)`);
            assert.equal(r.rest[0], 0x81);
            const len = r.rest[1] & 0x7f;
            const off = len === 126 ? 4 : 2;
            const n = len === 126 ? r.rest.readUInt16BE(2) : len;
            assert.equal(r.rest.length, off + n);
            assert.equal(JSON.parse(r.rest.subarray(off).toString('utf8')).type, 'welcome');
        } finally {
            sock.destroy();
        }
    });

    await t.test('handshake: ws checks Sec-WebSocket-Accept on a normal upgrade', async () => {
        const c = await openWs(srv.wsUrl(`/api/chat?room=${uniq()}`), { token: member() });
        assert.equal(c.welcome.type, 'welcome');
        assert.equal((await c.close()).code, 1000);
    });

    await t.test('handshake: Sec-WebSocket-Version 8 gets 426 with Sec-WebSocket-Version: 13', async () => {
        const r = await rawHttp(srv.port, requestHead(srv.port, `/api/chat?room=${uniq()}`,
            upgradeHeaders({ 'Sec-WebSocket-Version': '8', ...bearer() })));
        assert.equal(r.status, 426);
        assert.equal(r.headers['sec-websocket-version'], '13');
        // A 426 names what to upgrade to, as a connection option (RFC 9110 7.8, 15.5.22).
        assert.match(r.headers.upgrade ?? '', /^websocket$/i);
        assert.match(r.headers.connection ?? '', /\bupgrade\b/i);
        assert.equal(r.json?.error?.code, 'bad_request');
    });

    await t.test('handshake: missing or malformed headers get 400', async () => {
        const cases = {
            'no Sec-WebSocket-Key': { 'Sec-WebSocket-Key': undefined },
            'a key that is not base64': { 'Sec-WebSocket-Key': 'not base64 at all!!' },
            'a key of 15 bytes': { 'Sec-WebSocket-Key': crypto.randomBytes(15).toString('base64') },
            'a key of 17 bytes': { 'Sec-WebSocket-Key': crypto.randomBytes(17).toString('base64') },
            'no Upgrade': { Upgrade: undefined },
            'Upgrade: h2c': { Upgrade: 'h2c' },
            'no Connection': { Connection: undefined },
            'Connection without upgrade': { Connection: 'keep-alive' },
        };
        for (const [what, over] of Object.entries(cases)) {
            const r = await rawHttp(srv.port, requestHead(srv.port, `/api/chat?room=${uniq()}`,
                upgradeHeaders({ ...over, ...bearer() })));
            assert.equal(r.status, 400, what);
            assert.equal(r.json?.error?.code, 'bad_request', what);
        }
    });

    await t.test('handshake: Connection token lists and header case are accepted', async () => {
        // Lines of one name are one list (RFC 9110 5.3): the token may be on the second.
        for (const over of [{ Connection: 'keep-alive, Upgrade' }, { Upgrade: 'WebSocket' },
            { Connection: 'UPGRADE' }, { Connection: 'keep-alive\r\nConnection: Upgrade' },
            { Upgrade: 'h2c\r\nUpgrade: websocket' }]) {
            const c = await RawWs.open(srv.port, `/api/chat?room=${uniq()}`, { ...over, ...bearer() });
            try {
                assert.equal(c.response.status, 101, JSON.stringify(over));
                await c.json('welcome');
            } finally {
                c.destroy();
            }
        }
    });

    // ----------------------------------------------------- access control

    await t.test('access: token problems get 401 before the upgrade', async () => {
        const url = srv.wsUrl(`/api/chat?room=${uniq()}`);
        const cases = {
            'no token': undefined,
            'bad signature': srv.token({ sub: 'x', badSignature: true }),
            'alg none': srv.token({ sub: 'x', alg: 'none' }),
            expired: srv.token({ sub: 'x', exp: nowSec() - 600 }),
            'another secret': mintToken('not the secret', { sub: 'x' }),
            'HS512 claimed': srv.token({ sub: 'x', alg: 'HS512' }),
        };
        for (const [what, tok] of Object.entries(cases)) {
            const r = await expectHttpError(url, tok ? { Authorization: `Bearer ${tok}` } : {});
            assert.equal(r.status, 401, what);
            assert.equal(r.json?.error?.code, 'unauthorized', what);
        }
        // The token parameter is checked the same way.
        const r = await expectHttpError(`${url}&token=${srv.token({ sub: 'x', alg: 'none' })}`);
        assert.equal(r.status, 401);
    });

    await t.test('access: a rooms claim without the room gets 403; with it, the upgrade', async () => {
        const room = uniq();
        const tok = srv.token({ sub: uniq(), rooms: [`${room}-other`] });
        const r = await expectHttpError(srv.wsUrl(`/api/chat?room=${room}`), { Authorization: `Bearer ${tok}` });
        assert.equal(r.status, 403);
        assert.equal(r.json?.error?.code, 'forbidden');
        const c = await openWs(srv.wsUrl(`/api/chat?room=${room}`), { token: srv.token({ sub: uniq(), rooms: [room] }) });
        await c.close();
    });

    await t.test('access: bad parameters get 400', async () => {
        for (const q of ['room=bad%20room', 'room=a/b', `room=${'x'.repeat(65)}`, 'room=', `room=${uniq()}&since=abc`,
            `room=${uniq()}&since=-1`]) {
            const r = await expectHttpError(srv.wsUrl(`/api/chat?${q}`), bearer());
            assert.equal(r.status, 400, q);
            assert.equal(r.json?.error?.code, 'bad_request', q);
        }
    });

    await t.test('access: Origin outside allowed_origins gets 403; an allowed one is accepted', async () => {
        const url = srv.wsUrl(`/api/chat?room=${uniq()}`);
        const r = await expectHttpError(url, bearer(), { origin: 'http://evil.example' });
        assert.equal(r.status, 403);
        assert.equal(r.json?.error?.code, 'forbidden');
        const c = await openWs(url, { token: member(), origin: 'http://good.example' });
        await c.close();
        // chatd's own origin is no exception: unlisted, it is refused too.
        const own = await expectHttpError(url, bearer(), { origin: `http://127.0.0.1:${srv.port}` });
        assert.equal(own.status, 403);
        const otherPort = await expectHttpError(url, bearer(), { origin: `http://127.0.0.1:${srv.port + 1}` });
        assert.equal(otherPort.status, 403);
    });

    await t.test('access: a banned user gets 403', async () => {
        const sub = uniq('banned');
        const url = srv.wsUrl(`/api/chat?room=${uniq()}`);
        const before = await openWs(url, { token: member(sub) });
        await before.close();
        await redisCli('SADD', `${srv.prefix}banned`, sub);
        try {
            const r = await expectHttpError(url, bearer(sub));
            assert.equal(r.status, 403);
            assert.equal(r.json?.error?.code, 'forbidden');
        } finally {
            await redisCli('SREM', `${srv.prefix}banned`, sub);
        }
    });

    // --------------------------------------------------- control frames

    await t.test('ping with a payload gets a pong with the same payload', async () => {
        const c = await openWs(srv.wsUrl(`/api/chat?room=${uniq()}`), { token: member() });
        for (const payload of [Buffer.from('hello ping'), crypto.randomBytes(125), Buffer.alloc(0)]) {
            const pong = new Promise((resolve) => c.ws.once('pong', resolve));
            c.ws.ping(payload);
            assert.deepEqual(await pong, payload);
        }
        await c.close();
    });

    await t.test('close handshake: the server echoes the client code', async () => {
        const url = srv.wsUrl(`/api/chat?room=${uniq()}`);
        const a = await openWs(url, { token: member() });
        assert.equal((await a.close(1000, 'bye')).code, 1000);
        const b = await openWs(url, { token: member() });
        assert.equal((await b.close(4000, 'custom reason')).code, 4000);
        // With no code at all, the answer carries none either.
        const raw = await RawWs.open(srv.port, `/api/chat?room=${uniq()}`, bearer());
        try {
            await raw.json('welcome');
            await raw.send(OP.CLOSE);
            const f = await raw.closeFrame();
            assert.equal(f.payload.length, 0);
            await raw.waitEnd();
        } finally {
            raw.destroy();
        }
    });

    await t.test('close handshake: bad close payloads get 1002 or 1007', async () => {
        const room = uniq();
        await expectCloseCode(srv, room, frame(OP.CLOSE, Buffer.from([0x03])), 1002, 'one-byte close payload');
        await expectCloseCode(srv, room, frame(OP.CLOSE, closePayload(1005)), 1002, 'close code 1005 on the wire');
        await expectCloseCode(srv, room, frame(OP.CLOSE, closePayload(999)), 1002, 'close code 999');
        await expectCloseCode(srv, room, frame(OP.CLOSE, closePayload(1006)), 1002, 'close code 1006');
        await expectCloseCode(srv, room, frame(OP.CLOSE, closePayload(5000)), 1002, 'close code 5000');
        await expectCloseCode(srv, room, frame(OP.CLOSE, Buffer.concat([closePayload(1000), Buffer.from([0xff])])),
            1007, 'close reason that is not UTF-8');
    });

    // ------------------------------------------------ protocol errors

    await t.test('protocol errors close with the right code', async () => {
        const room = uniq();
        const text = (s) => Buffer.from(s, 'utf8');
        const cases = [
            ['binary frame', frame(OP.BINARY, text('{"type":"typing"}')), 1003],
            ['invalid UTF-8 text', frame(OP.TEXT, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])), 1007],
            ['overlong UTF-8', frame(OP.TEXT, Buffer.from([0xc0, 0xaf])), 1007],
            ['UTF-16 surrogate in UTF-8', frame(OP.TEXT, Buffer.from([0xed, 0xa0, 0x80])), 1007],
            ['invalid UTF-8 across fragments', Buffer.concat([
                frame(OP.TEXT, Buffer.from([0x22, 0xe2, 0x82]), { fin: false }),
                frame(OP.CONT, Buffer.from([0x28, 0x22])),
            ]), 1007],
            // Refused when the bad bytes arrive: the rest of the frame never does.
            ['invalid UTF-8 early in a frame whose rest never comes',
                frame(OP.TEXT, Buffer.concat([Buffer.from([0x22, 0x61, 0xf4, 0x90, 0x80, 0x80]),
                    Buffer.alloc(994, 0x61)])).subarray(0, 8 + 10), 1007],
            ['a message ending inside a character', Buffer.concat([
                frame(OP.TEXT, Buffer.from([0x22, 0xe2]), { fin: false }),
                frame(OP.CONT, Buffer.from([0x82])),
            ]), 1007],
            ['unmasked client frame', frame(OP.TEXT, text('{"type":"typing"}'), { mask: false }), 1002],
            ['RSV1 set', frame(OP.TEXT, text('{"type":"typing"}'), { rsv: 4 }), 1002],
            ['RSV3 set', frame(OP.TEXT, text('{"type":"typing"}'), { rsv: 1 }), 1002],
            ['unknown data opcode 3', frame(3, text('x')), 1002],
            ['unknown control opcode 0xB', frame(0xb, text('x')), 1002],
            ['fragmented ping', frame(OP.PING, text('p'), { fin: false }), 1002],
            ['control frame over 125 bytes', frame(OP.PING, Buffer.alloc(126, 0x61)), 1002],
            ['continuation without a start', frame(OP.CONT, text('{}')), 1002],
            ['a new message inside a fragmented one', Buffer.concat([
                frame(OP.TEXT, text('{"type":'), { fin: false }),
                frame(OP.TEXT, text('"typing"}')),
            ]), 1002],
        ];
        for (const [what, bytes, code] of cases) await expectCloseCode(srv, room, bytes, code, what);
    });

    await t.test('impossible lengths are refused from the header alone', async () => {
        const room = uniq();
        const head64 = (hi) => Buffer.from([0x81, 0xff, hi, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
        // No payload follows: the answer must not wait for it.
        await expectCloseCode(srv, room, head64(0x80), 1002, '64-bit length with the top bit set');
        await expectCloseCode(srv, room, head64(0x01), 1009, 'a 2^56-byte frame');
        await expectCloseCode(srv, room, Buffer.from([0x81, 0xfe, 0xff, 0xff, 1, 2, 3, 4]), 1009,
            'a 65535-byte frame over max_frame_bytes');
    });

    await t.test('frame size: exactly max_frame_bytes is accepted, one more gets 1009', async () => {
        const room = uniq();
        const sized = (n, ref) => {
            const base = JSON.stringify({ type: 'message', text: 'sized', ref, pad: '' });
            const s = JSON.stringify({ type: 'message', text: 'sized', ref, pad: 'x'.repeat(n - base.length) });
            assert.equal(Buffer.byteLength(s), n);
            return s;
        };
        const c = await RawWs.open(srv.port, `/api/chat?room=${room}`, bearer());
        try {
            await c.json('welcome');
            await c.send(OP.TEXT, sized(MAX_FRAME, 'exact'));
            const ack = await c.json('ack', { ref: 'exact' });
            assert.equal(typeof ack.id, 'number');
            // The same size in fragments is accepted too.
            const s = sized(MAX_FRAME, 'exact-frag');
            await c.write(Buffer.concat([frame(OP.TEXT, s.slice(0, 1000), { fin: false }),
                frame(OP.CONT, s.slice(1000, 3000), { fin: false }), frame(OP.CONT, s.slice(3000))]));
            await c.json('ack', { ref: 'exact-frag' });
        } finally {
            c.destroy();
        }
        await expectCloseCode(srv, room, frame(OP.TEXT, sized(MAX_FRAME + 1, 'over')), 1009, 'max_frame_bytes + 1');
        const s = sized(MAX_FRAME + 1, 'over-frag');
        await expectCloseCode(srv, room, Buffer.concat([frame(OP.TEXT, s.slice(0, 2100), { fin: false }),
            frame(OP.CONT, s.slice(2100))]), 1009, 'fragments adding up to max_frame_bytes + 1');
    });

    await t.test('a 1009 mid-frame: the close frame, then FIN; the client may finish its frame', async () => {
        // The rest of the oversized frame is read and dropped after our
        // FIN: closed with it unread, the socket would answer the client's
        // next bytes with a reset, and discard whatever of the close frame
        // was not yet acknowledged.
        const c = await RawWs.open(srv.port, `/api/chat?room=${uniq()}`, bearer(), { allowHalfOpen: true });
        let closed = false;
        let error;
        c.sock.on('close', () => { closed = true; });
        c.sock.on('error', (e) => { error ??= e; });
        try {
            await c.json('welcome');
            const big = frame(OP.TEXT, 'x'.repeat(MAX_FRAME * 32));
            await c.write(big.subarray(0, MAX_FRAME * 4));
            assert.equal((await c.closeFrame()).code, 1009);
            assert.equal((await c.waitEnd()).error, undefined, 'a FIN, not a reset');
            await c.write(big.subarray(MAX_FRAME * 4));
            c.sock.end();
            await waitFor(() => closed, 8000, 10, 'the connection to close');
            assert.equal(error, undefined, `the rest of the frame is taken, not reset (${error?.code})`);
        } finally {
            c.destroy();
        }
        assert.equal(await ok200(srv), true);
    });

    // ------------------------------------------------- fragmentation

    await t.test('fragmented message with a ping between fragments: pong, then the message', async () => {
        const room = uniq();
        const watcher = await openWs(srv.wsUrl(`/api/chat?room=${room}`), { token: member() });
        const c = await RawWs.open(srv.port, `/api/chat?room=${room}`, bearer());
        try {
            await c.json('welcome');
            const msg = JSON.stringify({ type: 'message', text: 'in pieces: caf\u00e9 \u20ac \u{1F600}', ref: 'frag-1' });
            const bytes = Buffer.from(msg, 'utf8');
            // Cut inside the multi-byte characters on purpose.
            const cut1 = bytes.indexOf(0xe2) + 1;
            const cut2 = bytes.indexOf(0xf0) + 2;
            await c.send(OP.TEXT, bytes.subarray(0, cut1), { fin: false });
            await c.send(OP.PING, 'between');
            const pong = await c.next((f) => f.opcode === OP.PONG, 'pong');
            assert.equal(pong.payload.toString(), 'between');
            await c.send(OP.CONT, bytes.subarray(cut1, cut2), { fin: false });
            await c.send(OP.PONG, 'unsolicited pongs are ignored');
            await c.send(OP.CONT, bytes.subarray(cut2));
            const ack = await c.json('ack', { ref: 'frag-1' });
            const got = await watcher.next({ type: 'message', id: ack.id });
            assert.equal(got.text, 'in pieces: caf\u00e9 \u20ac \u{1F600}');
        } finally {
            c.destroy();
            await watcher.close();
        }
    });

    await t.test('an empty fragmented message is answered like an empty frame', async () => {
        const c = await RawWs.open(srv.port, `/api/chat?room=${uniq()}`, bearer());
        try {
            await c.json('welcome');
            await c.send(OP.TEXT, '', { fin: false });
            await c.send(OP.CONT, '');
            const e = await c.json('error');
            assert.equal(e.code, 'bad_request');
            await c.send(OP.TEXT, '');
            assert.equal((await c.json('error')).code, 'bad_request');
        } finally {
            c.destroy();
        }
    });

    await t.test('ws client: fragmented sends are reassembled', async () => {
        const c = await openWs(srv.wsUrl(`/api/chat?room=${uniq()}`), { token: member() });
        const msg = JSON.stringify({ type: 'message', text: 'sent by ws in two frames', ref: 'wsfrag' });
        await c.sendRaw(msg.slice(0, 10), { fin: false });
        await c.sendRaw(msg.slice(10), { fin: true });
        await c.next({ type: 'ack', ref: 'wsfrag' });
        await c.next({ type: 'message', text: 'sent by ws in two frames' });
        await c.close();
    });

    await t.test('frames sent right behind the upgrade request wait for the welcome', async () => {
        const room = uniq();
        // An unknown type is answered at once (no Redis, no PostgreSQL),
        // so it would overtake the welcome if it were handled early.
        const after = Buffer.concat([frame(OP.PING, 'early'),
            frame(OP.TEXT, JSON.stringify({ type: 'no-such-type', ref: 'early-x' })),
            frame(OP.TEXT, JSON.stringify({ type: 'message', text: 'early bird', ref: 'early' }))]);
        const c = await RawWs.open(srv.port, `/api/chat?room=${room}`, bearer(), { after });
        try {
            await c.json('ack', { ref: 'early' });
            await c.json('error', { ref: 'early-x', code: 'unknown_type' });
            await c.next((f) => f.opcode === OP.PONG, 'pong');
            const first = c.frames[0];
            assert.ok(first.opcode === OP.TEXT && JSON.parse(first.payload.toString()).type === 'welcome',
                `the welcome comes first: ${c.describe()}`);
        } finally {
            c.destroy();
        }
    });

    await t.test('many frames in one packet are all answered, in order', async () => {
        const c = await RawWs.open(srv.port, `/api/chat?room=${uniq()}`, bearer());
        try {
            await c.json('welcome');
            const N = 500;
            await c.write(Buffer.concat(Array.from({ length: N }, (_, i) => frame(OP.PING, `p${i}`))));
            await waitFor(() => c.frames.filter((f) => f.opcode === OP.PONG).length >= N, 10000, 20,
                `${N} pongs`);
            const pongs = c.frames.filter((f) => f.opcode === OP.PONG).map((f) => f.payload.toString());
            assert.deepEqual(pongs, Array.from({ length: N }, (_, i) => `p${i}`));
        } finally {
            c.destroy();
        }
    });

    await t.test('a frame trickling in a few bytes at a time is decoded', async () => {
        const c = await RawWs.open(srv.port, `/api/chat?room=${uniq()}`, bearer());
        try {
            await c.json('welcome');
            const bytes = frame(OP.TEXT, JSON.stringify({ type: 'message', text: 't'.repeat(300), ref: 'slowly' }));
            assert.equal(bytes[1] & 0x7f, 126, 'a 16-bit length, so the header itself is split');
            for (let i = 0; i < bytes.length; i += 7) {
                c.sock.setNoDelay(true);
                await c.write(bytes.subarray(i, i + 7));
                if (i < 28) await sleep(20); // the header, a byte group at a time
            }
            await c.json('ack', { ref: 'slowly' });
        } finally {
            c.destroy();
        }
    });

    // --------------------------------------------- many connections

    await t.test('300 connections on 2 workers all get a welcome and a broadcast', async () => {
        const room = uniq('crowd');
        const url = srv.wsUrl(`/api/chat?room=${room}`);
        const tok = member(uniq('crowd'));
        const clients = [];
        try {
            for (let i = 0; i < 300; i += 50) {
                clients.push(...await Promise.all(Array.from({ length: 50 }, () => openWs(url, { token: tok, timeoutMs: 15000 }))));
            }
            assert.equal(clients.length, 300);
            const conns = new Set(clients.map((c) => c.welcome.conn_id));
            assert.equal(conns.size, 300, 'every connection has its own conn_id');
            const sender = await openWs(url, { token: member() });
            clients.push(sender);
            sender.send({ type: 'message', text: 'to the crowd', ref: 'crowd-1' });
            const ack = await sender.next({ type: 'ack', ref: 'crowd-1' });
            await Promise.all(clients.map((c) => c.next({ type: 'message', id: ack.id }, 15000)));
        } finally {
            await Promise.all(clients.map((c) => c.close()));
        }
    });

    // --------------------------------------- an independent client

    await t.test('libwebsockets client: welcome, ping/pong, message, fragments, close', async () => {
        const bin = path.join(ROOT, 'bin/tests/progs/lws_client');
        assert.ok(fs.existsSync(bin), `${bin} is missing: run make testprogs`);
        const out = await new Promise((resolve) => {
            execFile(bin, [String(srv.port), uniq('lws'), member(uniq('lws')), '--frag', '--timeout', '20'],
                { timeout: 40000, encoding: 'utf8' },
                (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
        });
        const line = out.stdout.trim().split('\n').pop();
        let r;
        try {
            r = JSON.parse(line);
        } catch {
            assert.fail(`lws_client printed no JSON line: ${out.stdout} ${out.stderr}`);
        }
        for (const k of ['connected', 'welcome', 'pong', 'ack', 'broadcast', 'frag_ack', 'frag_broadcast',
            'close_sent', 'closed', 'ok']) {
            assert.equal(r[k], true, `${k} in ${line} (stderr: ${out.stderr})`);
        }
        assert.equal(r.server_close_code, 1000, line);
        assert.equal(r.masked_frames, 0, line);
        assert.equal(out.code, 0, `exit status; ${line}`);
    });

    assert.ok(await ok200(srv), 'the server is still healthy');
});

// ------------------------------------------- 16-bit and 64-bit lengths

test('a banned user\'s refused upgrade changes no presence, even beside an open tab on the same worker', async (t) => {
    // One worker: the refused upgrades meet the open tab's counts. Banned
    // by hand (SADD, no kick): the open tab stays, the new ones are
    // refused, and neither the watcher nor Redis sees a join or leave.
    const srv = await startChatd({ t, workers: 1 });
    const member = (sub = uniq('u')) => srv.token({ sub, name: sub, role: 'member' });
    const sub = uniq('banned');
    const room = uniq();
    const url = srv.wsUrl(`/api/chat?room=${room}`);
    const tab = await openWs(url, { token: member(sub) });
    const watcher = await openWs(url, { token: member() });
    await redisCli('SADD', `${srv.prefix}banned`, sub);
    try {
        for (let i = 0; i < 3; i++) {
            const r = await expectHttpError(url, { Authorization: `Bearer ${member(sub)}` });
            assert.equal(r.status, 403);
            assert.equal(r.json?.error?.code, 'forbidden');
        }
        // A message from the tab after the refusals: anything those
        // caused would have reached the watcher before it.
        await tab.send({ type: 'message', text: 'still here', ref: 'r1' });
        await watcher.next((e) => e.type === 'message' && e.text === 'still here');
        const about = watcher.received.filter((e) => (e.type === 'join' || e.type === 'leave') && e.user?.id === sub);
        assert.deepEqual(about, [], 'no join or leave for the refused upgrades');
        assert.equal(await redisCli('SISMEMBER', `${srv.prefix}online:${room}`, sub), '1');
        assert.equal(await redisCli('HGET', `${srv.prefix}room_users:${room}`, sub), '1');
    } finally {
        await redisCli('SREM', `${srv.prefix}banned`, sub);
        await tab.close();
        await watcher.close();
    }
});

test('big and small frames: 7-, 16- and 64-bit length encodings', async (t) => {
    const srv = await startChatd({
        t, workers: 1, env: { CHAT_MAX_FRAME_BYTES: 100000, CHAT_MAX_TEXT_CHARS: 90000 },
    });
    const url = srv.wsUrl(`/api/chat?room=${uniq('big')}`);
    const c = await openWs(url, { token: srv.token({ sub: uniq(), role: 'member' }) });
    const watcher = await openWs(url, { token: srv.token({ sub: uniq(), role: 'member' }) });
    // 70000 bytes: a 64-bit length. typing gets no answer; the ack of the
    // message behind it shows it was read and accepted.
    const typing = JSON.stringify({ type: 'typing', pad: 'y'.repeat(70000 - 26) });
    assert.equal(typing.length, 70000);
    await c.sendRaw(typing);
    for (const [ref, n] of [['small', 10], ['b16', 1000], ['b16max', 65000], ['b64', 89990]]) {
        const text = `${ref}:${'z'.repeat(n - ref.length - 1)}`;
        c.send({ type: 'message', text, ref });
        const ack = await c.next({ type: 'ack', ref }, 10000);
        const own = await c.next({ type: 'message', id: ack.id }, 10000);
        assert.equal(own.text, text);
        const seen = await watcher.next({ type: 'message', id: ack.id }, 10000);
        assert.equal(seen.text.length, n, `${ref}: the broadcast carries the whole text`);
    }
    // The same from a raw socket, lengths encoded by hand.
    const raw = await RawWs.open(srv.port, `/api/chat?room=${uniq('big')}`,
        { Authorization: `Bearer ${srv.token({ sub: uniq(), role: 'member' })}` });
    try {
        await raw.json('welcome');
        const text = 'q'.repeat(80000);
        await raw.sendJson({ type: 'message', text, ref: 'raw64' });
        await raw.json('ack', { ref: 'raw64' }, 10000);
        const m = await raw.json('message', { text }, 10000);
        assert.equal(m.ref, 'raw64');
        const f = raw.frames.find((x) => x.opcode === OP.TEXT && x.payload.length > 80000);
        assert.ok(f, 'the broadcast came back as one large frame');
    } finally {
        raw.destroy();
    }
    await c.close();
    await watcher.close();
});

// ------------------------------------------------------------ liveness

test('liveness: pinged every interval; silent peers are dropped', async (t) => {
    const srv = await startChatd({ t, workers: 1, env: { CHAT_PING_INTERVAL_S: 1 } });
    const room = uniq('live');
    const alive = await openWs(srv.wsUrl(`/api/chat?room=${room}`), { token: srv.token({ sub: uniq(), role: 'member' }) });
    let pings = 0;
    alive.ws.on('ping', () => { pings++; }); // ws answers them itself

    const silent = await RawWs.open(srv.port, `/api/chat?room=${room}`,
        { Authorization: `Bearer ${srv.token({ sub: uniq(), role: 'member' })}` });
    try {
        await silent.json('welcome');
        const ping = await silent.next((f) => f.opcode === OP.PING, 'a server ping', 10000);
        assert.equal(ping.fin, true);
        // Never answered: the server gives up on it.
        await silent.waitEnd(10000);
    } finally {
        silent.destroy();
    }
    // Several intervals have passed; the answering client is still there.
    await waitFor(() => pings >= 3, 15000, 50, 'three pings to the answering client');
    assert.equal(alive.readyState, 1, 'the client that answers pings stays open');
    alive.send({ type: 'message', text: 'still here', ref: 'alive' });
    await alive.next({ type: 'ack', ref: 'alive' });
    await alive.close();
});

// ------------------------------------------------------- slow consumer

test('slow consumer: closed with 1013, others keep receiving everything', async (t) => {
    const OUTBUF = 65536;
    const srv = await startChatd({
        t, workers: 1,
        env: {
            CHAT_MAX_OUTBUF_BYTES: OUTBUF, CHAT_MAX_FRAME_BYTES: OUTBUF, CHAT_MAX_TEXT_CHARS: 40000,
            CHAT_RATE_PER_SEC: 1000000, CHAT_RATE_BURST: 1000000,
        },
    });
    const room = uniq('slow');
    const url = srv.wsUrl(`/api/chat?room=${room}`);
    const tok = () => srv.token({ sub: uniq(), role: 'member' });
    const before = await metric(srv, 'chatd_slow_consumer_closes_total');

    const slow = await RawWs.open(srv.port, `/api/chat?room=${room}`, { Authorization: `Bearer ${tok()}` });
    await slow.json('welcome');
    slow.sock.pause(); // reads nothing from here on
    const normal = await openWs(url, { token: tok() });
    const sender = await openWs(url, { token: tok() });
    t.after(() => { slow.destroy(); normal.terminate(); sender.terminate(); });

    const sent = [];
    const text = (i) => `${String(i).padStart(6, '0')}:${'m'.repeat(30000)}`;
    // Paced by the readers that do read: each message is sent once the
    // previous one reached them, so only the paused client can fall behind
    // (a burst larger than max_outbuf_bytes could close a busy reader too).
    let closed = false;
    for (let i = 0; i < 3000 && !closed; i++) {
        sender.send({ type: 'message', text: text(i), ref: `s${i}` });
        const ack = await sender.next({ type: 'ack', ref: `s${i}` }, 20000);
        sent.push(ack);
        const m = await normal.next({ type: 'message', id: ack.id }, 20000);
        assert.equal(m.seq, ack.seq);
        await sender.next({ type: 'message', id: ack.id }, 20000);
        if (i % 20 === 19) closed = (await metric(srv, 'chatd_slow_consumer_closes_total')) > before;
    }
    if (!closed) closed = (await metric(srv, 'chatd_slow_consumer_closes_total')) > before;
    assert.ok(closed, `the slow consumer was not closed after ${sent.length} messages of 30 KB`);

    // The normal reader got every message, in seq order.
    const seqs = normal.received.filter((e) => e.type === 'message').map((e) => e.seq);
    assert.deepEqual(seqs, sent.map((a) => a.seq).sort((a, b) => a - b));
    assert.equal(normal.readyState, 1);

    // The slow one, reading again, finds the close code at the end of what
    // it got (or, had the server given up on the handshake, a cut socket).
    slow.sock.resume();
    await slow.waitEnd(20000);
    const closeFrames = slow.frames.filter((f) => f.opcode === OP.CLOSE);
    if (closeFrames.length) {
        assert.equal(closeFrames.length, 1);
        assert.equal(closeFrames[0].code, 1013);
        assert.equal(slow.frames.at(-1).opcode, OP.CLOSE, 'nothing after the close frame');
    }
    const got = slow.frames.filter((f) => f.opcode === OP.TEXT &&
        JSON.parse(f.payload.toString('utf8')).type === 'message').length;
    assert.ok(got < sent.length, `the slow consumer got ${got} of ${sent.length} messages`);
    t.diagnostic(`slow consumer: ${sent.length} messages sent, ${got} frames reached it, ` +
        `close frame: ${closeFrames.length ? closeFrames[0].code : 'none (cut)'}`);
    await normal.close();
    await sender.close();
});

test('a client that pings and never reads is a slow consumer too: 1013, not unbounded pongs', async (t) => {
    const OUTBUF = 65536;
    const srv = await startChatd({ t, workers: 1, env: { CHAT_MAX_OUTBUF_BYTES: OUTBUF, CHAT_MAX_FRAME_BYTES: OUTBUF } });
    const before = await metric(srv, 'chatd_slow_consumer_closes_total');
    const c = await RawWs.open(srv.port, `/api/chat?room=${uniq('pinger')}`,
        { Authorization: `Bearer ${srv.token({ sub: uniq(), role: 'member' })}` });
    t.after(() => c.destroy());
    await c.json('welcome');
    c.sock.pause(); // reads nothing from here on
    // 1,000 pings of 125 bytes a write. The pongs fill the kernel's
    // buffers first (a few MB on loopback), then the server's output.
    const burst = Buffer.concat(Array.from({ length: 1000 }, () => frame(OP.PING, crypto.randomBytes(125))));
    let closed = false;
    let pings = 0;
    while (!closed && pings < 400000 && !c.endInfo) {
        for (let i = 0; i < 20; i++, pings += 1000) await c.write(burst);
        closed = (await metric(srv, 'chatd_slow_consumer_closes_total')) > before;
    }
    assert.ok(closed, `still open after ${pings} pings answered by nobody reading`);
    assert.ok(await ok200(srv));
    t.diagnostic(`closed as a slow consumer after ${pings} pings`);
});

test('after the server\'s close, a peer that keeps sending pings instead of its close is dropped in time', async (t) => {
    const srv = await startChatd({ t, workers: 1 });
    const user = uniq('kicked');
    const c = await RawWs.open(srv.port, `/api/chat?room=${uniq('room')}`,
        { Authorization: `Bearer ${srv.token({ sub: user, role: 'member' })}` });
    t.after(() => c.destroy());
    await c.json('welcome');
    await redisCli('PUBLISH', `${srv.prefix}control`, JSON.stringify({ op: 'kick', user }));
    const f = await c.closeFrame();
    assert.equal(f.code, 4003);
    const closedAt = Date.now();
    // Never the close answer: a ping a second, each of which would reset
    // an idle timer.
    const pinger = setInterval(() => { c.send(OP.PING, Buffer.from('still here')); }, 1000);
    try {
        await c.waitEnd(9000);
    } finally {
        clearInterval(pinger);
    }
    const after = Date.now() - closedAt;
    assert.ok(after >= 4000, `dropped ${after} ms after the close frame: before its time`);
    t.diagnostic(`dropped ${after} ms after the close frame`);
});

// --------------------------------------------------------- graceful stop

test('graceful stop: every client gets 1001 and the master exits 0', async (t) => {
    const srv = await startChatd({ t, workers: 2 });
    const clients = [];
    for (let i = 0; i < 8; i++) {
        clients.push(await openWs(srv.wsUrl(`/api/chat?room=${uniq('stop')}`),
            { token: srv.token({ sub: uniq(), role: 'member' }) }));
    }
    const raw = await RawWs.open(srv.port, `/api/chat?room=${uniq('stop')}`,
        { Authorization: `Bearer ${srv.token({ sub: uniq(), role: 'member' })}` });
    await raw.json('welcome');
    srv.kill('SIGTERM');
    const codes = await Promise.all(clients.map((c) => c.waitClose(15000)));
    for (const c of codes) assert.equal(c.code, 1001);
    const f = await raw.closeFrame(15000);
    assert.equal(f.code, 1001);
    await raw.send(OP.CLOSE, closePayload(1001));
    await raw.waitEnd(15000);
    const exit = await srv.waitExit(20000);
    assert.equal(exit.code, 0, `master exit: ${JSON.stringify(exit)}`);
});

test('graceful stop: while draining, new upgrades and /readyz get 503', async (t) => {
    const srv = await startChatd({ t, workers: 1 });
    const tok = srv.token({ sub: uniq(), role: 'member' });
    // A client that does not answer the close keeps the worker draining
    // (for up to 5 s) while new requests are tried.
    const raw = await RawWs.open(srv.port, `/api/chat?room=${uniq('drain')}`, { Authorization: `Bearer ${tok}` });
    await raw.json('welcome');
    srv.kill('SIGTERM');
    const f = await raw.closeFrame(15000);
    assert.equal(f.code, 1001);
    const r = await expectHttpError(srv.wsUrl(`/api/chat?room=${uniq('drain')}`), { Authorization: `Bearer ${tok}` });
    assert.equal(r.status, 503);
    assert.equal(r.json?.error?.code, 'unavailable');
    assert.equal((await httpGet(srv.port, '/readyz')).status, 503);
    await raw.send(OP.CLOSE, closePayload(1001));
    await raw.waitEnd(15000);
    const exit = await srv.waitExit(20000);
    assert.equal(exit.code, 0, `master exit: ${JSON.stringify(exit)}`);
});
