// The Socket.IO peer of `make bench-compare` (docs/performance.md, "Against
// Socket.IO"): one Socket.IO 4 server process; several of them share one
// Redis through @socket.io/redis-adapter. It does chatd's room broadcast
// without the durable store: a client connects with its token (the same
// HS256 JWT chatd takes, in the Authorization header or the `token` query
// parameter) and its room (`room` query parameter), joins the room, and
// every `message` event it sends is broadcast to the whole room, sender
// included, in chatd's JSON shape, then acknowledged through the Socket.IO
// ack callback with chatd's ack object:
//
//   client:  42<n>["message",{"type":"message","ref":"r1","text":"hi"}]
//   room:    42["message",{"type":"message","id":7,"seq":4,"room":"general",
//              "user":{"id":"alice","name":"Alice"},"text":"hi",
//              "created_at":"2026-11-26T09:31:32.123Z","ref":"r1"}]
//   sender:  43<n>[{"type":"ack","op":"message","ref":"r1","id":7,"seq":4,
//              "created_at":"2026-11-26T09:31:32.123Z"}]
//
// Refused sends get {"type":"error","ref":...,"code":...,"message":...}
// as the ack, with chatd's codes (bad_request, empty, too_long, forbidden).
//
// What it does not do, by design: store anything, rate-limit, presence,
// catch-up. `id` is unique across the processes (counter * PEER_COUNT +
// PEER_INDEX + 1); `seq` counts a room's messages in this process only, so
// unlike chatd's it is neither gapless nor ordered across processes.
//
// Environment: PORT (required), REDIS_URL (redis://127.0.0.1:6379),
// SIO_KEY (the adapter's channel prefix, "socket.io"), JWT_SECRET
// (required), PEER_INDEX (0), PEER_COUNT (1), MAX_TEXT_CHARS (2000),
// BIND (127.0.0.1), PING_INTERVAL_MS (25000), PING_TIMEOUT_MS (20000).
// GET /readyz answers 200 once the adapter's Redis links are up.
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const { Server } = require('socket.io');
const { createClient } = require('redis');
const { createAdapter } = require('@socket.io/redis-adapter');

const env = process.env;
const PORT = Number(env.PORT);
const SECRET = env.JWT_SECRET || '';
const INDEX = Number(env.PEER_INDEX || 0);
const COUNT = Number(env.PEER_COUNT || 1);
const MAX_TEXT = Number(env.MAX_TEXT_CHARS || 2000);
if (!(PORT > 0) || !SECRET) {
    console.error('socketio-peer: PORT and JWT_SECRET are required');
    process.exit(2);
}

// ---------------------------------------------------------------- tokens

function b64urlJson(s) {
    return JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
}

// The claims of a valid HS256 token (signature, exp, nbf), or null.
function verify(token) {
    if (typeof token !== 'string' || token.length > 8192) return null;
    const parts = token.split('.');
    if (parts.length !== 3) return null;
    try {
        const head = b64urlJson(parts[0]);
        if (head.alg !== 'HS256') return null;
        const mac = crypto.createHmac('sha256', SECRET).update(parts[0] + '.' + parts[1]).digest();
        const sig = Buffer.from(parts[2], 'base64url');
        if (sig.length !== mac.length || !crypto.timingSafeEqual(sig, mac)) return null;
        const c = b64urlJson(parts[1]);
        const now = Date.now() / 1000;
        if (typeof c.sub !== 'string' || !c.sub) return null;
        if (typeof c.exp === 'number' && now > c.exp + 30) return null;
        if (typeof c.nbf === 'number' && now < c.nbf - 30) return null;
        if (Array.isArray(c.rooms) && c.rooms.length === 0) return null;
        return c;
    } catch {
        return null;
    }
}

// ---------------------------------------------------------------- server

let ready = false;
const httpServer = http.createServer((req, res) => {
    if (req.url === '/readyz') {
        res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
        res.end(ready ? 'ok\n' : 'starting\n');
        return;
    }
    res.writeHead(404);
    res.end();
});

const io = new Server(httpServer, {
    transports: ['websocket'],     // the benchmark client speaks WebSocket only
    serveClient: false,
    perMessageDeflate: false,      // the default, stated: chatd does not compress either
    pingInterval: Number(env.PING_INTERVAL_MS || 25000),
    pingTimeout: Number(env.PING_TIMEOUT_MS || 20000),
    maxHttpBufferSize: 1e6,
});

io.use((socket, next) => {
    const h = socket.handshake;
    let token = h.query.token;
    const auth = h.headers.authorization;
    if (!token && typeof auth === 'string' && auth.startsWith('Bearer ')) token = auth.slice(7);
    const c = verify(token);
    if (!c) return next(new Error('unauthorized'));
    const room = typeof h.query.room === 'string' && h.query.room ? h.query.room : 'general';
    if (Array.isArray(c.rooms) && !c.rooms.includes(room)) return next(new Error('forbidden'));
    socket.data.room = room;
    socket.data.role = c.role || 'member';
    socket.data.user = { id: c.sub, name: typeof c.name === 'string' && c.name ? c.name : c.sub };
    next();
});

let nextId = 0;
const roomSeq = new Map(); // room -> last seq given in this process

function refuse(ack, ref, code, message) {
    const e = { type: 'error' };
    if (ref !== undefined) e.ref = ref;
    e.code = code;
    e.message = message;
    ack(e);
}

function codePoints(s) {
    let n = 0;
    for (const _ of s) n++;
    return n;
}

io.on('connection', (socket) => {
    const room = socket.data.room;
    const user = socket.data.user;
    socket.join(room);
    socket.on('message', (m, ack) => {
        if (typeof ack !== 'function') ack = () => {};
        if (m === null || typeof m !== 'object' || Array.isArray(m)) {
            return refuse(ack, undefined, 'bad_request', 'not a JSON object');
        }
        let ref = m.ref;
        if (ref !== undefined && (typeof ref !== 'string' || ref.length < 1 || ref.length > 64)) {
            return refuse(ack, undefined, 'bad_request', 'ref must be a string of 1..64');
        }
        if (socket.data.role === 'viewer') return refuse(ack, ref, 'forbidden', 'viewers cannot send');
        const text = m.text;
        if (typeof text !== 'string') return refuse(ack, ref, 'bad_request', 'text must be a string');
        if (text.trim() === '') return refuse(ack, ref, 'empty', 'text is empty');
        if (text.length > MAX_TEXT && codePoints(text) > MAX_TEXT) {
            return refuse(ack, ref, 'too_long', 'text is too long');
        }
        const id = nextId++ * COUNT + INDEX + 1;
        const seq = (roomSeq.get(room) || 0) + 1;
        roomSeq.set(room, seq);
        const created_at = new Date().toISOString();
        const ev = { type: 'message', id, seq, room, user, text, created_at };
        if (ref !== undefined) ev.ref = ref;
        io.to(room).emit('message', ev);
        const a = { type: 'ack', op: 'message' };
        if (ref !== undefined) a.ref = ref;
        a.id = id;
        a.seq = seq;
        a.created_at = created_at;
        ack(a);
    });
});

async function main() {
    const pub = createClient({ url: env.REDIS_URL || 'redis://127.0.0.1:6379' });
    const sub = pub.duplicate();
    for (const c of [pub, sub]) c.on('error', (e) => console.error('socketio-peer: redis:', e.message));
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub, { key: env.SIO_KEY || 'socket.io' }));
    await new Promise((resolve, reject) => {
        httpServer.once('error', reject);
        httpServer.listen(PORT, env.BIND || '127.0.0.1', resolve);
    });
    ready = true;
    console.error(`socketio-peer ${INDEX}/${COUNT}: pid ${process.pid} on :${PORT}`);
    const stop = () => {
        io.close();
        Promise.allSettled([pub.quit(), sub.quit()]).finally(() => process.exit(0));
        setTimeout(() => process.exit(0), 2000).unref();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
}

main().catch((e) => {
    console.error('socketio-peer:', e.message);
    process.exit(1);
});
