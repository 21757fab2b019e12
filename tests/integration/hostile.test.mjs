// Hostile input replay: a seeded generator produces a stream of random and
// mutated inputs and throws them at a running chatd over hundreds of
// connections:
//   - WebSocket frames after a real upgrade: valid client events with bit
//     flips, random opcodes, reserved bits, missing or present masks,
//     lengths in every encoding (lying, huge, over max_frame_bytes),
//     truncated frames, fragments out of order, control frames with odd
//     payloads, invalid UTF-8, random JSON-ish payloads of client events;
//   - HTTP request heads, valid ones of every route mutated (bit flips,
//     cut, duplicated or oversized headers, bad line ends, pipelining,
//     bodies, random bytes).
// Throughout, /healthz must answer 200; at the end no worker has died (the
// master's children are the same processes, no "worker died" in the log)
// and a client connected before the storm still exchanges messages.
//
// The seed is printed; CHATD_HOSTILE_SEED=<seed> replays the same inputs
// (the generator alone decides what is sent; only the server's answers
// and their timing may differ).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { httpGet, mintToken, openWs, sleep, startChatd } from '../lib/harness.mjs';

const CONNECTIONS = Number(process.env.CHATD_HOSTILE_CONNECTIONS ?? 800);
const LANES = 24;

/** mulberry32: small, fast, good enough to pick inputs; a seed replays them. */
function prng(seed) {
    let s = seed >>> 0;
    const next = () => {
        s = (s + 0x6D2B79F5) >>> 0;
        let t = s;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const r = {
        next,
        int: (n) => Math.floor(next() * n),
        range: (a, b) => a + Math.floor(next() * (b - a + 1)),
        chance: (p) => next() < p,
        pick: (a) => a[Math.floor(next() * a.length)],
        bytes: (n) => {
            const b = Buffer.alloc(n);
            for (let i = 0; i < n; i++) b[i] = Math.floor(next() * 256);
            return b;
        },
        // A child generator: each connection's inputs depend only on the
        // seed and its index, whatever the lanes' interleaving.
        fork: () => prng(Math.floor(next() * 4294967296)),
    };
    return r;
}

// ------------------------------------------------------------- payloads

const ODD_STRINGS = [
    '', ' ', '\t\n ', 'hi', 'x'.repeat(2000), 'x'.repeat(2001), '\u00e9'.repeat(2001), '🙂'.repeat(1000),
    '\u0000', '\u202e', '"', '\\', '\ud800', '\udfff', '<script>', "'; DROP TABLE messages; --", '%s%n',
    '\u2028\u2029', 'é\u0301', '\uffff', '𝕏',
];
const ODD_NUMBERS = [0, -1, 1, 2 ** 53, 2 ** 63, -(2 ** 63), 1e308, 1.5, -0, 9007199254740993, NaN];

function randomString(g) {
    if (g.chance(0.4)) return g.pick(ODD_STRINGS);
    const n = g.pick([1, 3, 10, 64, 65, 200, 1000]);
    let s = '';
    for (let i = 0; i < n; i++) {
        const k = g.int(10);
        s += k < 6 ? String.fromCharCode(g.range(0x20, 0x7e))
            : k < 8 ? String.fromCharCode(g.range(0, 0x7ff))
                : String.fromCodePoint(g.pick([g.range(0x800, 0xd7ff), g.range(0xe000, 0xffff), g.range(0x10000, 0x10ffff)]));
    }
    return s;
}

function randomValue(g, depth = 0) {
    switch (g.int(depth > 2 ? 4 : 7)) {
    case 0: return randomString(g);
    case 1: return g.pick(ODD_NUMBERS);
    case 2: return g.pick([true, false, null]);
    case 3: return g.int(100000);
    case 4: return Array.from({ length: g.int(4) }, () => randomValue(g, depth + 1));
    case 5: return Object.fromEntries(Array.from({ length: g.int(4) }, () => [randomString(g).slice(0, 8), randomValue(g, depth + 1)]));
    default: return randomString(g);
    }
}

/** A client event as JSON text: mostly plausible, often wrong in one field. */
function eventJson(g) {
    const type = g.chance(0.85) ? g.pick(['message', 'message', 'typing', 'edit', 'delete']) : randomValue(g);
    const ev = { type };
    if (g.chance(0.8)) ev.text = g.chance(0.7) ? randomString(g) : randomValue(g);
    if (g.chance(0.6)) ev.ref = g.chance(0.7) ? `r${g.int(1000)}` : randomValue(g);
    if (g.chance(0.5)) ev.id = g.chance(0.6) ? g.int(10000) : randomValue(g);
    if (g.chance(0.2)) ev.room = randomString(g);
    if (g.chance(0.1)) ev[randomString(g).slice(0, 10)] = randomValue(g);
    let s = JSON.stringify(ev) ?? '{}';
    switch (g.int(12)) {
    case 0: s = s.slice(0, g.int(s.length + 1)); break;             // cut
    case 1: s = `${s.slice(0, -1)},"type":"message"}`; break;        // duplicate key
    case 2: s = '['.repeat(g.pick([10, 1000, 5000])) + ']'.repeat(g.int(2) ? 0 : 5000); break;
    case 3: s = `{"type":"message","text":"${'\\u'.padEnd(g.int(6) + 2, 'd8')}"}`; break; // broken escapes
    case 4: s = g.pick(['null', '1', '"x"', '[]', '{}', 'true', '{"type":null}', '{"type":"message","text":1e999}']); break;
    case 5: { // character mutations
        const a = [...s];
        for (let i = g.range(1, 4); i > 0 && a.length; i--) {
            const p = g.int(a.length);
            const k = g.int(3);
            if (k === 0) a.splice(p, 1);
            else if (k === 1) a.splice(p, 0, g.pick(['"', '{', '}', ',', ':', '\\', '\u0000', ']']));
            else a[p] = String.fromCharCode(g.int(128));
        }
        s = a.join('');
        break;
    }
    default: break;
    }
    return Buffer.from(s, 'utf8');
}

const BAD_UTF8 = [
    [0xc0, 0x80], [0xc1, 0xbf], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xf4, 0x90, 0x80, 0x80],
    [0xf5, 0x80, 0x80, 0x80], [0xff], [0xfe], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0x80], [0xbf],
    [0xe0, 0x80, 0x80], [0xf0, 0x80, 0x80, 0x80],
];

/** A text payload with invalid UTF-8 somewhere (or at the very end, cut). */
function badUtf8(g) {
    const base = eventJson(g);
    const bad = Buffer.from(g.pick(BAD_UTF8));
    const p = g.int(base.length + 1);
    return Buffer.concat([base.subarray(0, p), bad, base.subarray(p)]);
}

// --------------------------------------------------------------- frames

/**
 * A client frame. opts: fin, rsv (3 bits), op, mask (false: unmasked),
 * len ('auto' | a number to declare instead of the real one), ext (force
 * the 16- or 64-bit length form).
 */
function frame(g, payload, { fin = true, rsv = 0, op = 1, mask = true, len = 'auto', ext } = {}) {
    const declared = len === 'auto' ? payload.length : len;
    const head = [((fin ? 0x80 : 0) | ((rsv & 7) << 4) | (op & 0x0f))];
    const mbit = mask ? 0x80 : 0;
    let form = ext ?? (declared < 126 ? 7 : declared < 65536 ? 16 : 64);
    if (form === 7 && declared > 125) form = 16;
    if (form === 16 && declared > 65535) form = 64;
    if (form === 7) head.push(mbit | declared);
    else if (form === 16) head.push(mbit | 126, (declared >> 8) & 0xff, declared & 0xff);
    else {
        head.push(mbit | 127);
        const big = BigInt.asUintN(64, BigInt(declared));
        for (let i = 7; i >= 0; i--) head.push(Number((big >> BigInt(8 * i)) & 0xffn));
    }
    const key = mask ? g.bytes(4) : Buffer.alloc(0);
    const body = Buffer.from(payload);
    if (mask) for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3];
    return Buffer.concat([Buffer.from(head), key, body]);
}

function flipBits(g, buf, n) {
    const b = Buffer.from(buf);
    for (let i = 0; i < n && b.length; i++) b[g.int(b.length)] ^= 1 << g.int(8);
    return b;
}

/** One input on an upgraded connection: [bytes, label]. */
function hostileFrame(g, st) {
    switch (g.int(16)) {
    case 0: case 1: case 2: case 3:
        return [frame(g, eventJson(g)), 'event'];
    case 4: return [flipBits(g, frame(g, eventJson(g)), g.range(1, 3)), 'bitflip'];
    case 5: return [frame(g, badUtf8(g)), 'bad-utf8'];
    case 6: return [frame(g, eventJson(g), { op: g.int(16), rsv: g.chance(0.3) ? g.int(8) : 0 }), 'opcode'];
    case 7: return [frame(g, eventJson(g), { mask: false }), 'unmasked'];
    case 8: { // lying length: shorter, longer, or huge
        const p = eventJson(g);
        const len = g.pick([0, 1, p.length - 1, p.length + 1, 125, 126, 65535, 65536, 16384, 16385, 2 ** 31, 2 ** 53, 2 ** 63]);
        return [frame(g, p, { len, ext: g.pick([undefined, 16, 64]) }), 'length'];
    }
    case 9: { // oversized, for real or only declared
        if (g.chance(0.5)) return [frame(g, Buffer.alloc(g.pick([16385, 20000, 70000]), 0x61)), 'oversized'];
        return [frame(g, Buffer.alloc(0), { len: g.pick([16385, 1 << 20, 2 ** 40]) }), 'declared-oversized'];
    }
    case 10: { // fragments, in order or not, with control frames between
        const p = eventJson(g);
        const cut = g.int(p.length + 1);
        const parts = [
            frame(g, p.subarray(0, cut), { fin: false, op: g.chance(0.8) ? 1 : 0 }),
            ...(g.chance(0.4) ? [frame(g, g.bytes(g.int(20)), { op: 9 })] : []),
            frame(g, p.subarray(cut), { op: g.chance(0.8) ? 0 : 1, fin: g.chance(0.8) }),
        ];
        if (g.chance(0.2)) parts.reverse();
        return [Buffer.concat(parts), 'fragments'];
    }
    case 11: { // control frames with odd payloads
        const op = g.pick([8, 9, 10]);
        const payload = op === 8 ? g.pick([
            Buffer.alloc(0), Buffer.from([3]), Buffer.from([3, 0xe8]), Buffer.from([0, 0]), Buffer.from([0x0f, 0xa0]),
            Buffer.concat([Buffer.from([3, 0xe8]), Buffer.from(g.pick(BAD_UTF8))]), g.bytes(g.int(126)),
        ]) : g.bytes(g.pick([0, 1, 125, 126, 200]));
        return [frame(g, payload, { op, fin: g.chance(0.9), len: payload.length > 125 ? payload.length : 'auto' }), 'control'];
    }
    case 12: return [frame(g, Buffer.alloc(0)), 'empty'];
    case 13: return [g.bytes(g.range(1, 40)), 'random-bytes'];
    case 14: { // a frame cut short (the connection then usually ends)
        const f = frame(g, eventJson(g));
        st.truncated = true;
        return [f.subarray(0, g.int(f.length)), 'truncated'];
    }
    default: return [frame(g, Buffer.from('{"type":"typing"}')), 'typing'];
    }
}

// ----------------------------------------------------------- HTTP heads

const PATHS = ['/healthz', '/readyz', '/metrics', '/api/chat', '/api/chat/messages', '/api/users', '/', '/index.html',
    '/app.js', '/nope', '/api/chat/', '//api/chat', '/api/chat/messages/..', '/%2e%2e/etc/passwd', '*'];

/** Percent-encodes every byte (lone surrogates become U+FFFD, as Buffer does). */
const pct = (s) => [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');

function query(g, secret, room) {
    const parts = [];
    if (g.chance(0.8)) parts.push(`room=${g.chance(0.8) ? room : pct(randomString(g).slice(0, 30))}`);
    if (g.chance(0.3)) parts.push(`since=${g.pick(['0', '5', '-1', 'x', '99999999999999999999', '1e3', ''])}`);
    if (g.chance(0.3)) parts.push(`limit=${g.pick(['1', '200', '201', '0', '-5', 'abc', '%00'])}`);
    if (g.chance(0.2)) parts.push(`before=${g.pick(['1', '0', '-1', 'x'])}`);
    if (g.chance(0.2)) parts.push(`after=${g.pick(['1', '0', '-1', 'x'])}`);
    if (g.chance(0.3)) parts.push(`token=${g.chance(0.5) ? mintToken(secret, { sub: `h${g.int(50)}` }) : randomString(g).slice(0, 50)}`);
    if (g.chance(0.1)) parts.push(g.pick(['%', '%zz', '&&&', '=', 'room', 'room=a&room=b', '%E0%A4%A']));
    return parts.length ? `?${parts.join('&')}` : '';
}

function httpHead(g, port, secret, room) {
    const method = g.chance(0.8) ? g.pick(['GET', 'GET', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'DELETE'])
        : g.pick(['get', 'G E T', 'CONNECT', 'TRACE', '', 'X'.repeat(100)]);
    const version = g.chance(0.9) ? g.pick(['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0']) : g.pick(['HTTP/2.0', 'HTTP/1.', 'http/1.1', 'HTTP/9.9', '']);
    const lines = [`${method} ${g.pick(PATHS)}${query(g, secret, room)} ${version}`];
    if (g.chance(0.9)) lines.push(`Host: 127.0.0.1:${port}`);
    if (g.chance(0.5)) {
        lines.push('Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Version: ${g.chance(0.8) ? '13' : g.pick(['8', '', '13, 8', 'x'])}`);
        lines.push(`Sec-WebSocket-Key: ${g.chance(0.8) ? crypto.randomBytes(16).toString('base64') : randomString(g).slice(0, 40)}`);
    }
    if (g.chance(0.6)) {
        const tok = g.chance(0.7) ? mintToken(secret, { sub: `h${g.int(50)}`, role: g.pick(['member', 'viewer', 'organizer']) })
            : g.pick([mintToken(secret, { sub: 'x', alg: 'none' }), mintToken('wrong', { sub: 'x' }), randomString(g), 'a.b.c', '']);
        lines.push(`Authorization: ${g.chance(0.9) ? 'Bearer ' : g.pick(['Basic ', 'bearer ', ''])}${tok}`);
    }
    if (g.chance(0.2)) lines.push(`Origin: ${g.pick(['http://evil.example', 'null', 'http://127.0.0.1', randomString(g).slice(0, 30)])}`);
    if (g.chance(0.2)) lines.push(`Content-Length: ${g.pick(['0', '5', '-1', 'abc', '99999999999', '10, 10'])}`);
    if (g.chance(0.1)) lines.push('Transfer-Encoding: chunked');
    if (g.chance(0.1)) lines.push(`Connection: ${g.pick(['close', 'keep-alive', 'Upgrade, close', ''])}`);
    if (g.chance(0.05)) for (let i = g.range(90, 110); i > 0; i--) lines.push(`X-Many-${i}: ${i}`);
    if (g.chance(0.05)) lines.push(`X-Big: ${'b'.repeat(g.pick([4000, 8200, 20000]))}`);
    if (g.chance(0.1)) lines.push(`${randomString(g).slice(0, 20)}: ${randomString(g).slice(0, 40)}`);
    if (g.chance(0.05)) lines.push(' folded continuation');
    const eol = g.chance(0.9) ? '\r\n' : g.pick(['\n', '\r', '\r\r\n', '\n\r']);
    let head = Buffer.from(`${lines.join(eol)}${eol}${eol}`, 'utf8');
    if (g.chance(0.25)) head = flipBits(g, head, g.range(1, 6));
    if (g.chance(0.1)) head = head.subarray(0, g.int(head.length));
    if (g.chance(0.1)) head = Buffer.concat([head, Buffer.from(randomString(g))]); // a body or junk after
    return head;
}

// ---------------------------------------------------------- connections

/** Writes chunks (split at random points) and waits for the close or a short while. */
function exchange(g, port, chunks, { waitMs }) {
    return new Promise((resolve) => {
        const sock = net.connect({ host: '127.0.0.1', port });
        let got = Buffer.alloc(0);
        let done = false;
        const finish = () => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            sock.destroy();
            resolve(got);
        };
        const timer = setTimeout(finish, waitMs);
        sock.on('data', (d) => { if (got.length < 65536) got = Buffer.concat([got, d]); });
        sock.on('error', finish);
        sock.on('close', finish);
        sock.on('connect', async () => {
            for (const c of chunks) {
                if (done) return;
                sock.write(c);
                if (c.gap) await sleep(c.gap);
            }
            if (g.chance(0.2) && !done) sock.end();
        });
    });
}

function splitRandomly(g, buf) {
    if (buf.length < 2 || g.chance(0.6)) return [buf];
    const out = [];
    let at = 0;
    while (at < buf.length) {
        const n = Math.min(buf.length - at, g.range(1, Math.max(1, Math.floor(buf.length / 2))));
        const part = buf.subarray(at, at + n);
        if (g.chance(0.2)) part.gap = g.range(1, 20);
        out.push(part);
        at += n;
    }
    return out;
}

function upgradeRequest(g, port, secret, room) {
    const tok = g.chance(0.95) ? mintToken(secret, { sub: `h${g.int(200)}`, role: g.chance(0.9) ? 'member' : 'organizer' })
        : mintToken(secret, { sub: `h${g.int(200)}`, role: 'viewer' });
    const since = g.chance(0.2) ? `&since=${g.int(50)}` : '';
    return Buffer.from([`GET /api/chat?room=${room}${since} HTTP/1.1`, `Host: 127.0.0.1:${port}`, 'Upgrade: websocket',
        'Connection: Upgrade', 'Sec-WebSocket-Version: 13', `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}`,
        `Authorization: Bearer ${tok}`, '', ''].join('\r\n'));
}

const tally = (o, k) => { o[k] = (o[k] ?? 0) + 1; };

/** What the server said after a 101: 'close <code>' and event types (ack, error:<code>, ...). */
function serverEvents(buf) {
    const out = [];
    let at = buf.indexOf('\r\n\r\n');
    if (at < 0 || !buf.subarray(0, 12).toString('latin1').startsWith('HTTP/1.1 101')) return out;
    at += 4;
    while (at + 2 <= buf.length) {
        const op = buf[at] & 0x0f;
        let len = buf[at + 1] & 0x7f;
        let h = 2;
        if (len === 126) h = 4;
        else if (len === 127) h = 10;
        if (at + h > buf.length) break;
        if (h === 4) len = buf.readUInt16BE(at + 2);
        else if (h === 10) len = Number(buf.readBigUInt64BE(at + 2));
        if (at + h + len > buf.length) break;
        const payload = buf.subarray(at + h, at + h + len);
        if (op === 8) out.push(`close ${payload.length >= 2 ? payload.readUInt16BE(0) : '-'}`);
        else if (op === 1) {
            try {
                const ev = JSON.parse(payload.toString('utf8'));
                out.push(ev.type === 'error' ? `error:${ev.code}` : ev.type);
            } catch {
                out.push('not-json');
            }
        }
        at += h + len;
    }
    return out;
}

/** One hostile connection; returns how many inputs it sent. */
async function hostileConnection(g, srv, rooms, stats) {
    if (g.chance(0.35)) {
        // HTTP: one head, or several pipelined.
        const n = g.chance(0.8) ? 1 : g.range(2, 20);
        const heads = Array.from({ length: n }, () => httpHead(g, srv.port, srv.secret, g.pick(rooms)));
        const got = await exchange(g, srv.port, splitRandomly(g, Buffer.concat(heads)), { waitMs: g.range(50, 400) });
        stats.http += n;
        tally(stats.statuses, /^HTTP\/1\.1 (\d{3})/.exec(got.toString('latin1'))?.[1] ?? 'none');
        return n;
    }
    const st = {};
    const frames = [];
    // Some connections stay at the chat layer (well-formed frames of
    // hostile events), so that the storm gets past the frame decoder.
    const chatOnly = g.chance(0.4);
    for (let i = g.range(1, 30); i > 0 && !st.truncated; i--) {
        const [bytes, label] = chatOnly && i > 1 ? [frame(g, eventJson(g)), 'event'] : hostileFrame(g, st);
        frames.push(bytes);
        stats.frames[label] = (stats.frames[label] ?? 0) + 1;
    }
    const up = upgradeRequest(g, srv.port, srv.secret, g.pick(rooms));
    // Frames right behind the request, or after it in pieces.
    const chunks = g.chance(0.3) ? [Buffer.concat([up, ...frames])]
        : [Object.assign(up, { gap: g.range(5, 30) }), ...frames.flatMap((f) => splitRandomly(g, f))];
    const got = await exchange(g, srv.port, chunks, { waitMs: g.range(100, 600) });
    stats.ws += frames.length;
    tally(stats.upgrades, /^HTTP\/1\.1 (\d{3})/.exec(got.toString('latin1'))?.[1] ?? 'none');
    for (const ev of serverEvents(got)) tally(stats.replies, ev);
    return frames.length + 1;
}

test('hostile input storm: no worker dies, /healthz stays 200, a well-behaved client still chats', async (t) => {
    const seed = process.env.CHATD_HOSTILE_SEED !== undefined ? Number(process.env.CHATD_HOSTILE_SEED)
        : crypto.randomBytes(4).readUInt32BE(0);
    assert.ok(Number.isInteger(seed) && seed >= 0, 'CHATD_HOSTILE_SEED must be an integer >= 0');
    // Printed at once, so that a run that hangs or crashes still shows it.
    process.stderr.write(`hostile: seed ${seed} (replay with CHATD_HOSTILE_SEED=${seed})\n`);
    t.diagnostic(`seed ${seed} (replay with CHATD_HOSTILE_SEED=${seed})`);

    const srv = await startChatd({ t, workers: 2 });
    const suffix = (seed % 100000).toString(36);
    const rooms = [`hostile-${suffix}`, `hostile-${suffix}-b`];
    const workers = srv.children().sort();
    const alice = await openWs(srv.wsUrl(`/api/chat?room=${rooms[0]}`), { token: srv.token({ sub: 'alice' }) });
    const bob = await openWs(srv.wsUrl(`/api/chat?room=${rooms[0]}`), { token: srv.token({ sub: 'bob' }) });
    t.after(() => Promise.all([alice.close(), bob.close()]));

    // /healthz, polled on fresh connections while the storm lasts.
    let storming = true;
    const health = { ok: 0, bad: [] };
    const poller = (async () => {
        while (storming) {
            try {
                const r = await httpGet(srv.port, '/healthz', { timeoutMs: 5000 });
                if (r.status === 200) health.ok++;
                else health.bad.push(`status ${r.status}`);
            } catch (e) {
                health.bad.push(e.message);
            }
            await sleep(100);
        }
    })();

    const root = prng(seed);
    const gens = Array.from({ length: CONNECTIONS }, () => root.fork());
    const stats = { inputs: 0, http: 0, ws: 0, frames: {}, statuses: {}, upgrades: {}, replies: {} };
    let nextConn = 0;
    try {
        await Promise.all(Array.from({ length: LANES }, async () => {
            while (nextConn < CONNECTIONS) {
                const g = gens[nextConn++];
                const n = await hostileConnection(g, srv, rooms, stats);
                stats.inputs += n;
            }
        }));
    } finally {
        storming = false;
        await poller;
    }
    t.diagnostic(`${CONNECTIONS} connections, ${stats.inputs} inputs (${stats.http} HTTP heads, ${stats.ws} frames: ` +
        `${JSON.stringify(stats.frames)}); /healthz ${health.ok} times 200`);
    t.diagnostic(`answers: HTTP ${JSON.stringify(stats.statuses)}; upgrades ${JSON.stringify(stats.upgrades)}; ` +
        `after them ${JSON.stringify(stats.replies)}`);
    assert.ok(!stats.replies['not-json'], 'the server sent a text frame that is not JSON');

    assert.deepEqual(health.bad, [], '/healthz did not answer 200 during the storm');
    assert.ok(health.ok > 0);
    assert.deepEqual(srv.children().sort(), workers, 'the workers are not the same processes');
    assert.ok(!/worker died/.test(srv.logs()), 'a worker died');
    assert.equal(srv.exitInfo, null, 'the master exited');

    // The well-behaved clients opened before the storm still chat.
    // (A fresh ref: a replay of the seed uses the same rooms, and a ref
    // alice used before would only get the original's ack back.)
    const ref = `after-${crypto.randomBytes(4).toString('hex')}`;
    await alice.send({ type: 'message', text: 'still here after the storm', ref });
    const ack = await alice.next((e) => e.type === 'ack' && e.ref === ref, 10000);
    const got = await bob.next((e) => e.type === 'message' && e.id === ack.id, 10000);
    assert.equal(got.text, 'still here after the storm');
    assert.equal((await httpGet(srv.port, '/healthz')).status, 200);

    // A clean stop, and nothing from the sanitizers (`make SAN=1` reports
    // errors as they happen, and the master's leaks when it exits).
    await Promise.all([alice.close(), bob.close()]);
    const stop = await srv.stop('SIGTERM', 20000);
    assert.deepEqual([stop.code, stop.leftover], [0, []]);
    const m = /ERROR: (?:Address|Leak)Sanitizer|runtime error:|Sanitizer:DEADLYSIGNAL/.exec(srv.logs());
    assert.ok(!m, `sanitizer report: ${m && srv.logs().slice(m.index, m.index + 1500)}`);
    assert.ok(!/worker died/.test(srv.logs()), 'a worker died');
});
