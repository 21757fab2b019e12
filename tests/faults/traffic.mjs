// Shared by the fault suite (tests/faults/*.test.mjs): two chatd instances
// on one hub, many chat clients driving mixed traffic (messages, edits,
// deletes, typing, joins and leaves), and the final check, id by id, that
// nothing acknowledged was lost.
//
// A ChatClient behaves as a careful production client: it records every
// ack and every event it receives; when its socket closes it reconnects
// (to the next instance if its own refuses) with since=<last seq seen> and
// resends its unacknowledged messages with the same ref; a message refused
// with `unavailable` is resent later with the same ref. So, whatever the
// fault, at the end every message a client sent must be acked exactly
// once, stored exactly once, and seen by every client of the room.
//
// verifyRoom() compares the clients' records with PostgreSQL:
//   - room_events seq is 1..rooms.seq without a gap, every messages row
//     has its room_events rows (no half-stored change);
//   - every ack matches its row (id, creation seq; edits and deletes
//     applied), and every row of a test user was acked to its author;
//   - every client saw the room up to rooms.seq, in strictly increasing
//     seq order (nothing repeated), and its view of every message created
//     after it joined is the stored one (text, or deleted); a client that
//     never reconnected saw exactly the seqs welcome.last_seq+1..rooms.seq.
// checkPresence() compares `P online:<room>` with the clients connected.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import {
    WebSocket, httpGet, mintToken, psql, redisCli, sleep, sq, startChatd, waitFor,
} from '../lib/harness.mjs';

// Nobody reaches this rate: these tests are not about the rate limit.
export const NO_RATE = { CHAT_RATE_PER_SEC: 100000, CHAT_RATE_BURST: 100000 };
// Outages here are a few seconds: a reconnect never needs a resync.
export const BASE_ENV = { ...NO_RATE, CHAT_REPLAY_MAX: 100000, CHAT_PRESENCE_TTL_S: 3 };

export const rnd = () => crypto.randomBytes(4).toString('hex');
const pick = (a) => a[Math.floor(Math.random() * a.length)];

/**
 * Two instances (masters) sharing one hub: same Redis prefix, same secret,
 * same database, 2 workers each. envA/envB are merged over env for one of
 * them (the partition test points one at a proxy).
 */
export async function startPair(t, { env = {}, envA = {}, envB = {}, workers = 2, opts = {} } = {}) {
    const secret = crypto.randomBytes(24).toString('hex');
    const prefix = `flt${rnd()}:`;
    const base = { t, secret, prefix, workers, ...opts };
    const a = await startChatd({ ...base, env: { ...BASE_ENV, ...env, ...envA } });
    const b = await startChatd({ ...base, env: { ...BASE_ENV, ...env, ...envB } });
    a.name = 'A';
    b.name = 'B';
    await controlReady(prefix, 2 * workers);
    return [a, b];
}

/** Waits until n workers listen on the control channel. */
export async function controlReady(prefix, n, timeoutMs = 15000) {
    await waitFor(async () => {
        const out = (await redisCli('PUBSUB', 'NUMSUB', `${prefix}control`)).split('\n');
        return Number(out[1]) >= n;
    }, timeoutMs, 50, `${n} workers subscribed to ${prefix}control`);
}

/** The server's /metrics as {name{labels}: value}. */
export async function metrics(srv) {
    const r = await httpGet(srv.port, '/metrics');
    const out = {};
    for (const line of r.body.split('\n')) {
        const m = /^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$/.exec(line);
        if (m) out[m[1]] = Number(m[2]);
    }
    return out;
}

let clientSeq = 0;

/**
 * One chat user with one connection at a time. servers: the instances it
 * may use, in order of preference; it starts on servers[0] and moves on
 * when one refuses it.
 */
export class ChatClient {
    constructor({ user, room, servers, secret, role = 'member', reconnect = true, label, textSize = 0 }) {
        this.user = user ?? `u${++clientSeq}-${rnd()}`;
        this.room = room;
        this.servers = servers;
        this.serverIndex = 0;
        this.secret = secret;
        this.role = role;
        this.reconnect = reconnect;
        this.label = label ?? this.user;
        this.textSize = textSize;    // pad new messages to this many characters
        this.token = mintToken(secret, { sub: this.user, name: `N ${this.user}`, role, ttl: 3600 });

        this.ws = null;
        this.gen = 0;
        this.live = false;        // welcomed on the current connection
        this.stopped = false;
        this.startSeq = null;     // welcome.last_seq of the first connection
        this.lastSeq = null;      // highest change seq seen
        this.seen = new Map();    // message id -> {seq, deleted, text}
        this.changeSeqs = [];     // seqs of change events, in arrival order
        this.violations = [];     // protocol breaches seen by this client
        this.connections = 0;     // welcomes received
        this.reconnects = 0;      // connections after the first
        this.closes = [];         // {code, reason} of each connection's end
        this.connectFailures = [];// why connection attempts failed
        this.counts = { typing: 0, join: 0, leave: 0, notice: 0, resync: 0 };

        this.n = 0;               // refs issued
        this.outstanding = new Map(); // ref -> request sent on the current connection, no reply yet
        this.toSend = new Map();  // ref -> message request to (re)send when possible
        this.acked = new Map();   // ref -> ack
        this.mine = [];           // {id, ref, createdMs, deleted, busy} of my acked messages
        this.refusals = {};       // error code -> count
        this.unknownOutcome = 0;  // edits/deletes whose connection closed before the reply
        this.lastResendMs = 0;
        this.waiters = new Set();
        this.history = [];        // connection events, for failure messages
    }

    get server() { return this.servers[this.serverIndex % this.servers.length]; }

    /** Opens the first connection (bounded). */
    async start(timeoutMs = 10000) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            try {
                await this._open();
                return this;
            } catch (e) {
                if (Date.now() > deadline) throw new Error(`${this.label}: cannot connect: ${e.message}`);
                await sleep(100);
            }
        }
    }

    _url() {
        let q = `/api/chat?room=${encodeURIComponent(this.room)}`;
        if (this.lastSeq !== null) q += `&since=${this.lastSeq}`;
        return this.server.wsUrl(q);
    }

    /** One connection attempt: resolves once welcomed, rejects otherwise. */
    _open() {
        const gen = ++this.gen;
        const since = this.lastSeq;
        return new Promise((resolve, reject) => {
            let settled = false;
            let welcomed = false;
            const fail = (e) => {
                if (settled) return;
                settled = true;
                try { ws.terminate(); } catch { /* already gone */ }
                reject(e);
            };
            const ws = new WebSocket(this._url(), {
                headers: { Authorization: `Bearer ${this.token}` }, handshakeTimeout: 5000,
            });
            const welcomeTimer = setTimeout(() => fail(new Error('no welcome within 8 s')), 8000);
            ws.on('unexpected-response', (req, res) => {
                res.resume();
                req.destroy();
                fail(new Error(`HTTP ${res.statusCode}`));
            });
            ws.on('error', (e) => {
                // After the welcome: ws failed the connection (a bad frame from the server).
                if (welcomed && gen === this.gen) this.violations.push(`socket error: ${e.message}`);
                fail(e);
            });
            ws.on('close', (code, reason) => {
                clearTimeout(welcomeTimer);
                if (!settled) {
                    fail(new Error(`closed ${code} before the welcome`));
                    return;
                }
                if (welcomed && gen === this.gen) this._onClose(code, reason.toString('utf8'));
            });
            ws.on('message', (data, isBinary) => {
                if (gen !== this.gen) return;
                let ev;
                try {
                    ev = JSON.parse(data.toString('utf8'));
                } catch {
                    this.violations.push(`not JSON (binary=${isBinary}): ${data.toString('utf8').slice(0, 80)}`);
                    return;
                }
                if (ev.type === 'welcome' && !settled) {
                    settled = true;
                    welcomed = true;
                    clearTimeout(welcomeTimer);
                    this.ws = ws;
                    this._onWelcome(ev, since);
                    resolve();
                    return;
                }
                if (!settled) {
                    this.violations.push(`event before the welcome: ${JSON.stringify(ev).slice(0, 120)}`);
                    return;
                }
                this._onEvent(ev);
            });
        });
    }

    _onWelcome(ev, since) {
        this.connections++;
        if (this.connections > 1) this.reconnects++;
        if (this.startSeq === null) {
            this.startSeq = ev.last_seq;
            this.lastSeq = ev.last_seq;
        } else if (since === null) {
            this.violations.push('reconnected without since');
        }
        this.welcome = ev;
        this.history.push(`welcome ${this.server.name} ${ev.conn_id.slice(0, 8)} last_seq=${ev.last_seq} since=${since} t=${Date.now() % 100000}`);
        this.live = true;
        // Unanswered messages of the previous connection go again, same ref.
        this._flushToSend(true);
        this._notify();
    }

    _onClose(code, reason) {
        this.live = false;
        this.ws = null;
        this.closes.push({ code, reason });
        this.history.push(`close ${code} t=${Date.now() % 100000}`);
        for (const [ref, req] of this.outstanding) {
            if (req.type === 'message') {
                this.toSend.set(ref, req);
            } else {
                // An edit or delete whose reply was lost may have been
                // applied: a maybe-deleted message is not touched again.
                this.unknownOutcome++;
                const m = this.mine.find((x) => x.id === req.id);
                if (m) {
                    m.busy = false;
                    if (req.type === 'delete') m.deleted = true;
                }
            }
        }
        this.outstanding.clear();
        if (!this.reconnect) this.stopped = true;
        this._notify();
        if (!this.stopped) this._reconnectLoop();
    }

    async _reconnectLoop() {
        let delay = 50;
        while (!this.stopped && !this.live) {
            await sleep(delay + Math.floor(Math.random() * 50));
            if (this.stopped) return;
            try {
                await this._open();
                return;
            } catch (e) {
                this.connectFailures.push(`${this.server.name ?? this.server.port}: ${e.message}`);
                // Refused (503 while draining, a dead instance): try the next one.
                this.serverIndex++;
                delay = Math.min(delay * 2, 400);
            }
        }
    }

    _change(ev) {
        if (ev.room !== this.room) this.violations.push(`change of room ${ev.room} in ${this.room}`);
        if (!(ev.seq > this.lastSeq)) {
            this.violations.push(`seq ${ev.seq} (${ev.type} ${ev.id}) after ${this.lastSeq}: repeated or out of order`);
        } else {
            this.lastSeq = ev.seq;
        }
        this.changeSeqs.push(ev.seq);
        const s = this.seen.get(ev.id) ?? { seq: 0, deleted: false, text: undefined };
        s.seq = ev.seq;
        if (ev.type === 'delete') s.deleted = true;
        else s.text = ev.text;
        this.seen.set(ev.id, s);
    }

    _onEvent(ev) {
        switch (ev.type) {
        case 'message': case 'edit': case 'delete':
            this._change(ev);
            break;
        case 'ack': this._onReply(ev); break;
        case 'error':
            if (ev.ref !== undefined && this.outstanding.has(ev.ref)) this._onReply(ev);
            else this.violations.push(`error without a request: ${JSON.stringify(ev)}`);
            break;
        case 'resync':
            this.counts.resync++;
            this.violations.push(`resync ${JSON.stringify(ev)}`);
            break;
        case 'typing': case 'join': case 'leave': case 'notice':
            this.counts[ev.type]++;
            break;
        default:
            this.violations.push(`unexpected event ${JSON.stringify(ev).slice(0, 120)}`);
        }
        this._notify();
    }

    _onReply(ev) {
        const req = this.outstanding.get(ev.ref);
        if (!req) {
            this.violations.push(`reply for no outstanding request: ${JSON.stringify(ev)}`);
            return;
        }
        this.outstanding.delete(ev.ref);
        if (ev.type === 'ack') {
            if (ev.op !== req.type) this.violations.push(`ack op ${ev.op} for a ${req.type}`);
            if (this.acked.has(ev.ref)) this.violations.push(`second ack for ${ev.ref}`);
            this.acked.set(ev.ref, { ...ev, req });
            if (req.type === 'message') {
                this.mine.push({ id: ev.id, ref: ev.ref, createdMs: Date.now(), deleted: false, busy: false });
            } else {
                const m = this.mine.find((x) => x.id === req.id);
                if (m) {
                    m.busy = false;
                    if (req.type === 'delete') m.deleted = true;
                }
            }
            return;
        }
        this.refusals[ev.code] = (this.refusals[ev.code] ?? 0) + 1;
        if (ev.code !== 'unavailable') {
            this.violations.push(`unexpected error for ${req.type} ${ev.ref}: ${JSON.stringify(ev)}`);
        }
        if (req.type === 'message') {
            this.toSend.set(ev.ref, req); // resent later, same ref
        } else {
            const m = this.mine.find((x) => x.id === req.id);
            if (m) m.busy = false;
        }
    }

    _sendNow(req) {
        if (!this.live || !this.ws) return false;
        this.outstanding.set(req.ref, req);
        // A failed write means the socket is closing: _onClose resends.
        this.ws.send(JSON.stringify(req), () => {});
        return true;
    }

    _flushToSend(force = false) {
        if (!this.live || this.toSend.size === 0) return;
        const now = Date.now();
        if (!force && now - this.lastResendMs < 300) return;
        this.lastResendMs = now;
        for (const [ref, req] of [...this.toSend]) {
            this.toSend.delete(ref);
            if (!this._sendNow(req)) {
                this.toSend.set(ref, req);
                return;
            }
        }
    }

    /** A new message (queued for later if not connected now). */
    sendMessage(text = undefined) {
        const ref = `${this.user}-m${++this.n}`;
        let body = text ?? `m${this.n} from ${this.user} ${rnd()}`;
        if (text === undefined && body.length < this.textSize) body += ' '.padEnd(this.textSize - body.length, 'x');
        const req = { type: 'message', ref, text: body };
        if (!this._sendNow(req)) this.toSend.set(ref, req);
        return ref;
    }

    /** Edits one of my recent messages, if there is one to edit and a connection. */
    edit() {
        const cands = this.mine.filter((m) => !m.deleted && !m.busy && Date.now() - m.createdMs < 40000);
        if (!cands.length || !this.live) return false;
        const m = pick(cands);
        m.busy = true;
        return this._sendNow({ type: 'edit', id: m.id, text: `edited ${rnd()}`, ref: `${this.user}-e${++this.n}` });
    }

    /** Deletes one of my messages. */
    remove() {
        const cands = this.mine.filter((m) => !m.deleted && !m.busy);
        if (!cands.length || !this.live) return false;
        const m = pick(cands);
        m.busy = true;
        return this._sendNow({ type: 'delete', id: m.id, ref: `${this.user}-d${++this.n}` });
    }

    typing() {
        if (this.live && this.ws) this.ws.send('{"type":"typing"}', () => {});
    }

    /** One step of random traffic. */
    step() {
        this._flushToSend();
        if (!this.live || this.outstanding.size > 30) return;
        const r = Math.random();
        if (r < 0.68) this.sendMessage();
        else if (r < 0.80) this.edit() || this.sendMessage();
        else if (r < 0.86) this.remove() || this.sendMessage();
        else this.typing();
    }

    /** Unanswered and unsent messages. */
    get unacked() { return this.outstanding.size + this.toSend.size; }

    _notify() {
        for (const w of [...this.waiters]) {
            if (w.pred()) {
                this.waiters.delete(w);
                w.resolve();
            }
        }
    }

    /** Resolves when pred() holds (checked on every event), rejects after timeoutMs. */
    until(pred, timeoutMs, what) {
        if (pred()) return Promise.resolve();
        return new Promise((resolve, reject) => {
            const w = { pred, resolve };
            const timer = setTimeout(() => {
                this.waiters.delete(w);
                reject(new Error(`${this.label}: not ${what} within ${timeoutMs} ms (${this.describe()})`));
            }, timeoutMs);
            w.resolve = () => { clearTimeout(timer); resolve(); };
            this.waiters.add(w);
        });
    }

    describe() {
        return `user=${this.user} room=${this.room} live=${this.live} lastSeq=${this.lastSeq} ` +
            `outstanding=${this.outstanding.size} toSend=${this.toSend.size} acked=${this.acked.size} ` +
            `connections=${this.connections} closes=${JSON.stringify(this.closes.slice(-3))} ` +
            `failures=${JSON.stringify(this.connectFailures.slice(-3))} ` +
            `violations=${JSON.stringify(this.violations.slice(0, 3))} history=${JSON.stringify(this.history.slice(-6))}`;
    }

    /** Stops reconnecting and closes (1000). */
    async stop() {
        this.stopped = true;
        const ws = this.ws;
        if (!ws) return;
        await new Promise((resolve) => {
            const timer = setTimeout(() => { ws.terminate(); resolve(); }, 2000);
            ws.once('close', () => { clearTimeout(timer); resolve(); });
            try { ws.close(1000); } catch { clearTimeout(timer); resolve(); }
        });
    }

    /** Drops the connection without a close handshake (the client "crashes"). */
    terminate() {
        this.stopped = true;
        this.ws?.terminate();
    }
}

/** Opens n clients per room, spread over the servers in turn; t: closed after it. */
export async function openClients(t, rooms, perRoom, servers, secret, opts = {}) {
    const clients = [];
    t.after(() => { for (const c of clients) c.terminate(); });
    let k = 0;
    for (const room of rooms) {
        for (let i = 0; i < perRoom; i++, k++) {
            // Each client prefers "its" instance, then the others in order.
            const order = servers.map((_, j) => servers[(k + j) % servers.length]);
            clients.push(new ChatClient({ room, servers: order, secret, ...opts }));
        }
    }
    // A few at a time: quick, without a connection burst.
    for (let i = 0; i < clients.length; i += 8) await Promise.all(clients.slice(i, i + 8).map((c) => c.start()));
    return clients;
}

/**
 * Random traffic from every client (a step every periodMs on average) and,
 * with visitors > 0, that many users coming and going (joins and leaves).
 * Returns {stop(): Promise, steps, visits}.
 */
export function runTraffic(clients, { periodMs = 250, visitors = 0, rooms = [], servers = [], secret } = {}) {
    let running = true;
    const stats = { steps: 0, visits: 0, visitFailures: 0 };
    const loops = clients.map(async (c) => {
        await sleep(Math.random() * periodMs);
        while (running) {
            c.step();
            stats.steps++;
            await sleep(periodMs / 2 + Math.random() * periodMs);
        }
    });
    for (let v = 0; v < visitors; v++) {
        loops.push((async () => {
            while (running) {
                const user = `visitor${v}-${rnd()}`;
                const tok = mintToken(secret, { sub: user, ttl: 600 });
                const srv = pick(servers);
                const room = pick(rooms);
                try {
                    const ws = new WebSocket(srv.wsUrl(`/api/chat?room=${room}`), {
                        headers: { Authorization: `Bearer ${tok}` }, handshakeTimeout: 3000,
                    });
                    await new Promise((resolve, reject) => {
                        const timer = setTimeout(() => reject(new Error('no welcome')), 5000);
                        ws.on('message', (d) => {
                            if (JSON.parse(d.toString()).type === 'welcome') { clearTimeout(timer); resolve(); }
                        });
                        ws.on('unexpected-response', (req, res) => { res.resume(); req.destroy(); clearTimeout(timer); reject(new Error(`HTTP ${res.statusCode}`)); });
                        ws.on('error', (e) => { clearTimeout(timer); reject(e); });
                        ws.on('close', () => { clearTimeout(timer); reject(new Error('closed')); });
                    });
                    stats.visits++;
                    await sleep(200 + Math.random() * 800);
                    await new Promise((resolve) => {
                        const timer = setTimeout(() => { ws.terminate(); resolve(); }, 2000);
                        ws.once('close', () => { clearTimeout(timer); resolve(); });
                        ws.close(1000);
                    });
                } catch {
                    stats.visitFailures++;
                    await sleep(200);
                }
            }
        })());
    }
    return {
        stats,
        async stop() {
            running = false;
            await Promise.all(loops);
        },
    };
}

/**
 * After the traffic stopped: waits (bounded) until every client that
 * should be connected is, every message it sent is acked, and it has
 * seen its room up to PostgreSQL's seq. Returns {room: seq}.
 */
export async function settle(clients, timeoutMs = 30000) {
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const active = clients.filter((c) => !c.stopped);
    await Promise.all(active.map((c) => c.until(() => c.live, left(), 'reconnected')));
    // Resend what is unacked until it is (unavailable answers come back to toSend).
    await waitFor(() => {
        for (const c of active) c._flushToSend();
        return active.every((c) => c.unacked === 0);
    }, left(), 100, 'every message acked').catch(async (e) => {
        const late = [];
        for (const c of active.filter((x) => x.unacked).slice(0, 5)) {
            const refs = [...c.outstanding.keys(), ...c.toSend.keys()].slice(0, 3);
            const rows = await psql(`SELECT ref, id, created_seq FROM messages WHERE room = ${sq(c.room)} AND user_id = ${sq(c.user)} AND ref IN (${refs.map(sq).join(',')})`);
            late.push(`${c.describe()} unacked ${JSON.stringify(refs)}, stored: ${JSON.stringify(rows)}`);
        }
        throw new Error(`${e.message}: ${late.join('; ')}`);
    });
    const rooms = [...new Set(clients.map((c) => c.room))];
    const seqs = {};
    for (const room of rooms) seqs[room] = Number(await psql(`SELECT coalesce((SELECT seq FROM rooms WHERE name = ${sq(room)}), 0)`));
    await Promise.all(active.map((c) => c.until(() => c.lastSeq >= seqs[c.room], left(),
        `caught up to seq ${seqs[c.room]}`)));
    return seqs;
}

/**
 * The id-by-id check (see the top of this file). receivers: clients whose
 * view must be complete (connected throughout, or reconnecting with
 * since); senders: every client that sent (its acks are checked).
 */
export async function verifyRoom(room, { senders, receivers, exact = [] }) {
    const problems = [];
    const seq = Number(await psql(`SELECT coalesce((SELECT seq FROM rooms WHERE name = ${sq(room)}), 0)`));
    const [cnt, min, max] = (await psql(`SELECT count(*), coalesce(min(seq), 0), coalesce(max(seq), 0) FROM room_events WHERE room = ${sq(room)}`)).split('|').map(Number);
    if (!(cnt === seq && max === seq && (seq === 0 || min === 1))) {
        problems.push(`room_events of ${room}: ${cnt} rows, seq ${min}..${max}, rooms.seq ${seq}: not contiguous`);
    }
    const orphans = await psql(`SELECT count(*) FROM messages m WHERE m.room = ${sq(room)} AND (
        NOT EXISTS (SELECT 1 FROM room_events e WHERE e.room = m.room AND e.seq = m.created_seq) OR
        NOT EXISTS (SELECT 1 FROM room_events e WHERE e.room = m.room AND e.seq = m.seq))`);
    if (orphans !== '0') problems.push(`${orphans} messages rows of ${room} without their room_events rows`);
    const rows = new Map();
    const byRef = new Map();
    const out = await psql(`SELECT id, user_id, coalesce(ref, ''), created_seq, seq, deleted_at IS NOT NULL, encode(convert_to(body, 'UTF8'), 'hex') FROM messages WHERE room = ${sq(room)}`);
    for (const line of out ? out.split('\n') : []) {
        const [id, user, ref, cseq, mseq, del, body64] = line.split('|');
        const row = { id: Number(id), user, ref, createdSeq: Number(cseq), seq: Number(mseq), deleted: del === 't',
            body: Buffer.from(body64, 'hex').toString('utf8') };
        rows.set(row.id, row);
        byRef.set(`${user}\u0000${ref}`, row);
    }
    let acks = 0;
    for (const c of senders.filter((x) => x.room === room)) {
        for (const [ref, ack] of c.acked) {
            acks++;
            if (ack.req.type === 'message') {
                const row = byRef.get(`${c.user}\u0000${ref}`);
                if (!row) problems.push(`acked message ${ref} (id ${ack.id}) not stored`);
                else if (row.id !== ack.id || row.createdSeq !== ack.seq) {
                    problems.push(`acked message ${ref}: ack id ${ack.id} seq ${ack.seq}, row id ${row.id} seq ${row.createdSeq}`);
                }
            } else {
                const row = rows.get(ack.req.id);
                if (!row || row.seq < ack.seq) problems.push(`acked ${ack.req.type} ${ref} of id ${ack.req.id} (seq ${ack.seq}) not stored`);
                else if (ack.req.type === 'delete' && !row.deleted) problems.push(`acked delete ${ref}: id ${ack.id} not deleted`);
            }
        }
        if (c.unacked) problems.push(`${c.label}: ${c.unacked} messages never acked`);
        for (const v of c.violations) problems.push(`${c.label}: ${v}`);
    }
    // Every stored message of a test user was acked to its author.
    const senderOf = new Map(senders.map((c) => [c.user, c]));
    for (const row of rows.values()) {
        const c = senderOf.get(row.user);
        if (c && !c.acked.has(row.ref)) problems.push(`stored message ${row.id} (${row.ref}) was never acked to ${c.label}`);
    }
    for (const c of receivers.filter((x) => x.room === room)) {
        if (c !== undefined && !senders.includes(c)) for (const v of c.violations) problems.push(`${c.label}: ${v}`);
        if (c.lastSeq !== seq) problems.push(`${c.label}: saw up to seq ${c.lastSeq}, the room is at ${seq}`);
        let missing = 0, stale = 0;
        for (const row of rows.values()) {
            if (row.createdSeq <= c.startSeq) continue;
            const s = c.seen.get(row.id);
            if (!s) {
                if (missing++ < 3) problems.push(`${c.label}: never saw message ${row.id} (seq ${row.createdSeq}, ${row.ref})`);
            } else if (s.deleted !== row.deleted || (!row.deleted && s.text !== row.body)) {
                if (stale++ < 3) problems.push(`${c.label}: message ${row.id} seen as ${JSON.stringify(s)}, stored ${JSON.stringify(row)}`);
            }
        }
        if (missing > 3 || stale > 3) problems.push(`${c.label}: ${missing} messages missing, ${stale} stale in all`);
        if (exact.includes(c)) {
            const want = Array.from({ length: seq - c.startSeq }, (_, i) => c.startSeq + 1 + i);
            if (c.changeSeqs.length !== want.length || c.changeSeqs.some((s, i) => s !== want[i])) {
                problems.push(`${c.label} (never reconnected): saw ${c.changeSeqs.length} changes, want ${want.length} (seq ${c.startSeq + 1}..${seq})`);
            }
        }
    }
    return { problems, seq, rows: rows.size, acks };
}

/** SMEMBERS of the room's online set == the users of the live clients (bounded wait). */
export async function checkPresence(prefix, room, clients, timeoutMs = 10000) {
    const want = [...new Set(clients.filter((c) => c.room === room && c.live).map((c) => c.user))].sort();
    let got;
    try {
        await waitFor(async () => {
            got = (await redisCli('SMEMBERS', `${prefix}online:${room}`)).split('\n').filter(Boolean).sort();
            return JSON.stringify(got) === JSON.stringify(want);
        }, timeoutMs, 100);
    } catch {
        const extra = got.filter((u) => !want.includes(u));
        const lacking = want.filter((u) => !got.includes(u));
        assert.fail(`presence of ${room}: online but not connected ${JSON.stringify(extra)}, ` +
            `connected but not online ${JSON.stringify(lacking)}`);
    }
}

/** Everything at the end of a scenario: settle, verify every room, presence. Returns a summary line. */
export async function finalCheck(t, { prefix, clients, rooms, exact = [], settleMs = 30000, presence = true }) {
    const seqs = await settle(clients, settleMs);
    const problems = [];
    let acks = 0, stored = 0;
    for (const room of rooms) {
        const r = await verifyRoom(room, {
            senders: clients, receivers: clients.filter((c) => !c.stopped), exact,
        });
        problems.push(...r.problems);
        acks += r.acks;
        stored += r.rows;
    }
    const refusals = {};
    for (const c of clients) for (const [k, v] of Object.entries(c.refusals)) refusals[k] = (refusals[k] ?? 0) + v;
    const reconnects = clients.reduce((n, c) => n + c.reconnects, 0);
    const summary = `rooms ${JSON.stringify(seqs)}, ${stored} messages stored, ${acks} acks, ` +
        `refusals ${JSON.stringify(refusals)}, ${reconnects} reconnects`;
    t.diagnostic(summary);
    assert.deepEqual(problems.slice(0, 40), [], `${problems.length} problems (${summary})`);
    if (presence) for (const room of rooms) await checkPresence(prefix, room, clients);
    return { seqs, acks, stored, refusals, reconnects };
}

const SANITIZER = /ERROR: (?:Address|Leak|Memory|Thread)Sanitizer|runtime error:|Sanitizer:DEADLYSIGNAL/;

/**
 * Stops the servers (SIGTERM, bounded) and checks their whole output: no
 * worker died but the `deaths` the test caused, no sanitizer report (a
 * `make SAN=1` build reports errors as they happen, and the master's leaks
 * when it exits: hence after the stop), nothing left running.
 */
export async function stopServers(servers, { deaths = 0 } = {}) {
    const leftovers = [];
    for (const s of servers) {
        const r = await s.stop('SIGTERM', 20000);
        if (r.leftover?.length) leftovers.push(`${s.name ?? s.port}: ${r.leftover.join(',')}`);
    }
    const logs = servers.map((s) => s.logs()).join('\n');
    const died = logs.split('\n').filter((l) => /worker died/.test(l));
    assert.equal(died.length, deaths, `workers died: ${died.join('\n')}`);
    const m = SANITIZER.exec(logs);
    assert.ok(!m, `sanitizer report: ${m && logs.slice(Math.max(0, m.index - 200), m.index + 1500)}`);
    assert.deepEqual(leftovers, [], 'processes left after the stop');
}

/**
 * A TCP proxy for one upstream (node:net). pause() stops forwarding both
 * ways without closing anything (a partition: bytes wait in the proxy, new
 * connections are accepted but not connected upstream); resume() forwards
 * again; cut() destroys every connection; blackhole() loses the current
 * connections silently, as a host that died without a FIN or RST would:
 * the upstream side is closed, the client side stays open and hears
 * nothing, ever (new connections work).
 */
export async function startProxy(upstreamPort, upstreamHost = '127.0.0.1') {
    const pairs = new Set();
    const lost = [];
    let paused = false;
    const server = net.createServer((client) => {
        const pair = { client, upstream: null, toUp: [], toClient: [] };
        pairs.add(pair);
        const connectUp = () => {
            if (pair.upstream || client.destroyed) return;
            const up = net.connect(upstreamPort, upstreamHost);
            pair.upstream = up;
            up.on('data', (d) => {
                if (pair.lost) return;
                if (paused) pair.toClient.push(d);
                else client.write(d);
            });
            const end = () => {
                if (pair.lost) return;
                pairs.delete(pair);
                client.destroy();
                up.destroy();
            };
            up.on('error', end);
            up.on('close', end);
            for (const d of pair.toUp.splice(0)) up.write(d);
        };
        pair.connectUp = connectUp;
        client.on('data', (d) => {
            if (pair.lost) return;
            if (paused || !pair.upstream) pair.toUp.push(d);
            else pair.upstream.write(d);
        });
        const end = () => { pairs.delete(pair); client.destroy(); pair.upstream?.destroy(); };
        client.on('error', end);
        client.on('close', end);
        if (!paused) connectUp();
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
        port: server.address().port,
        get connections() { return pairs.size; },
        pause() { paused = true; },
        resume() {
            paused = false;
            for (const p of [...pairs]) {
                if (p.client.destroyed) continue;
                if (!p.upstream) p.connectUp();
                else for (const d of p.toUp.splice(0)) p.upstream.write(d);
                for (const d of p.toClient.splice(0)) p.client.write(d);
            }
        },
        cut() {
            for (const p of [...pairs]) { p.client.destroy(); p.upstream?.destroy(); }
            pairs.clear();
        },
        blackhole() {
            for (const p of [...pairs]) {
                p.lost = true;
                p.upstream?.destroy();
                lost.push(p.client);
            }
            pairs.clear();
        },
        async close() {
            this.cut();
            for (const c of lost) c.destroy();
            await new Promise((resolve) => server.close(resolve));
        },
    };
}
