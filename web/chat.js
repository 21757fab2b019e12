// chatd web client: the connection to one room, with no DOM in it.
//
// ChatSession keeps a WebSocket open to /api/chat, reconnecting with
// exponential backoff and `since=<last seq seen>` so that nothing is missed;
// it drops events it has already seen, notices gaps in `seq`, and keeps an
// outbox of requests (message, edit, delete) that is resent with the same
// `ref` after a reconnect until each gets its ack or error. One request is
// in flight at a time: the server may store requests that arrive together
// in any order, and a user's messages must keep the order they were sent in.

export const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30000;
const STABLE_MS = 10000;       // a connection up this long resets the backoff
const MAX_TRIES = { rate_limited: 30, unavailable: 6 };   // resends before giving up
const TYPING_EVERY_MS = 1100;  // the server drops more than one a second
const REPLY_TIMEOUT_MS = 15000; // no ack or error by then: the link is broken

/** GET a JSON endpoint with the token: {status, ok, json} (status 0: network error). */
export async function api(path, token) {
    let res;
    try {
        res = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
    } catch {
        return { status: 0, ok: false, json: null };
    }
    let json = null;
    try {
        json = await res.json();
    } catch { /* not JSON */ }
    return { status: res.status, ok: res.ok, json };
}

function randomId(bytes = 9) {
    const b = crypto.getRandomValues(new Uint8Array(bytes));
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * handlers (all optional):
 *   status({state, retryAt, reason, message})
 *       state: 'connecting' | 'open' | 'waiting' (retryAt, blocked) | 'stopped'
 *       (reason: 'kicked' | 'unauthorized' | 'forbidden' | 'bad_request')
 *   welcome(ev, {resumed})   resumed: connected with since= (a replay follows)
 *   resync(ev)               history must be reloaded through REST
 *   event(ev)                message, edit, delete (new seq only), typing,
 *                            join, leave, notice, anything else
 *   reply(frame, ev)         the final ack or error for a request
 *   retrying(frame, ev, ms)  a request is resent in ms (rate_limited, unavailable)
 */
export class ChatSession {
    constructor({ token, room, handlers = {} }) {
        this.token = token;
        this.room = room;
        this.h = handlers;
        this.ws = null;
        this.welcomed = false;
        this.welcomedAt = 0;
        this.lastSeq = null;      // null until the first welcome
        this.replayUntil = 0;     // seq jumps are normal while replaying
        this.attempt = 0;
        this.upButRefused = 0;    // failed connects while REST answered 200
        this.timer = null;
        this.stopped = false;
        this.outbox = new Map();  // ref -> {frame, tries, timer}, in send order
        this.inflight = null;     // the outbox item sent and not yet answered
        this.replyTimer = null;
        this.refPrefix = randomId();
        this.refCount = 0;
        this.lastTypingAt = 0;
        this.typingTimer = null;
        this.onOnline = () => { if (this.timer) this.connect(); };
        window.addEventListener('online', this.onOnline);
    }

    get isOpen() {
        return Boolean(this.ws && this.welcomed && this.ws.readyState === WebSocket.OPEN);
    }

    url() {
        const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
        const q = new URLSearchParams({ room: this.room, token: this.token });
        if (this.lastSeq !== null) q.set('since', String(this.lastSeq));
        return `${proto}//${location.host}/api/chat?${q}`;
    }

    connect() {
        clearTimeout(this.timer);
        this.timer = null;
        if (this.stopped || this.ws) return;
        this.emit('status', { state: 'connecting' });
        let ws;
        try {
            ws = new WebSocket(this.url());
        } catch {
            this.retry();
            return;
        }
        this.ws = ws;
        this.welcomed = false;
        ws.onmessage = (e) => this.onFrame(ws, e.data);
        ws.onclose = (e) => this.onClose(ws, e);
    }

    /** Closes for good (room switch, sign out). */
    close() {
        this.stopped = true;
        clearTimeout(this.timer);
        clearTimeout(this.replyTimer);
        clearTimeout(this.typingTimer);
        for (const item of this.outbox.values()) clearTimeout(item.timer);
        window.removeEventListener('online', this.onOnline);
        const ws = this.ws;
        this.ws = null;
        if (ws) ws.close(1000);
    }

    emit(name, ...args) {
        const fn = this.h[name];
        if (fn) fn(...args);
    }

    stop(reason, message) {
        this.close();
        this.emit('status', { state: 'stopped', reason, message });
    }

    retry() {
        const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
        const delay = Math.round(base / 2 + Math.random() * base / 2);
        this.attempt++;
        const retryAt = Date.now() + delay;
        this.timer = setTimeout(() => this.connect(), delay);
        // The server answers but will not take the WebSocket: a proxy that
        // drops upgrades, or an Origin the server does not accept.
        this.emit('status', { state: 'waiting', retryAt, blocked: this.upButRefused >= 3 });
    }

    /** Drops the socket and connects again at once (with since=). */
    reconnectNow() {
        const ws = this.ws;
        this.ws = null;
        this.welcomed = false;
        this.inflight = null;
        clearTimeout(this.replyTimer);
        if (ws) ws.close(1000);
        this.connect();
    }

    onClose(ws, e) {
        if (ws !== this.ws) return;
        this.ws = null;
        const wasWelcomed = this.welcomed;
        this.welcomed = false;
        this.inflight = null;     // resent after the next welcome
        clearTimeout(this.replyTimer);
        if (this.stopped) return;
        if (e.code === 4003) {
            this.stop('kicked');
            return;
        }
        if (!wasWelcomed) {
            // A refused upgrade looks like any failed connection to a
            // browser; ask the REST side why before trying again.
            this.probe();
            return;
        }
        if (Date.now() - this.welcomedAt > STABLE_MS) this.attempt = 0;
        this.retry();
    }

    async probe() {
        const r = await api(`/api/users?room=${encodeURIComponent(this.room)}`, this.token);
        if (this.stopped || this.ws) return;
        const message = r.json?.error?.message;
        if (r.status === 401) this.stop('unauthorized', message);
        else if (r.status === 403) this.stop('forbidden', message);
        else if (r.status === 400) this.stop('bad_request', message);
        else {
            this.upButRefused = r.ok ? this.upButRefused + 1 : 0;
            this.retry();
        }
    }

    onFrame(ws, data) {
        if (ws !== this.ws) return;
        let ev;
        try {
            ev = JSON.parse(data);
        } catch {
            return;
        }
        if (!ev || typeof ev !== 'object') return;
        switch (ev.type) {
        case 'welcome': {
            const resumed = this.lastSeq !== null;
            this.welcomed = true;
            this.welcomedAt = Date.now();
            this.upButRefused = 0;
            if (!resumed) this.lastSeq = Number(ev.last_seq) || 0;
            this.replayUntil = Number(ev.last_seq) || 0;
            this.emit('status', { state: 'open' });
            this.emit('welcome', ev, { resumed });
            this.pump();
            return;
        }
        case 'resync':
            this.lastSeq = Number(ev.last_seq) || 0;
            this.replayUntil = this.lastSeq;
            this.emit('resync', ev);
            return;
        case 'message':
        case 'edit':
        case 'delete':
            if (typeof ev.seq === 'number' && this.lastSeq !== null) {
                if (ev.seq <= this.lastSeq) return;            // seen already
                if (ev.seq > this.lastSeq + 1 && this.lastSeq >= this.replayUntil) {
                    // Something was missed: catch up from the last seq seen.
                    this.reconnectNow();
                    return;
                }
                this.lastSeq = ev.seq;
            }
            this.emit('event', ev);
            return;
        case 'ack':
        case 'error':
            this.onReply(ev);
            return;
        default:
            this.emit('event', ev);
        }
    }

    /** Queues a message/edit/delete request; returns its ref. */
    request(frame) {
        const ref = `w${this.refPrefix}-${++this.refCount}`;
        this.outbox.set(ref, { frame: { ...frame, ref }, tries: 0, timer: null });
        this.pump();
        return ref;
    }

    /** Sends the oldest queued request if the link is up and none is in flight. */
    pump() {
        if (!this.isOpen || this.inflight) return;
        const head = this.outbox.values().next().value;
        if (!head || head.timer) return;   // empty, or waiting to be resent
        this.inflight = head;
        this.ws.send(JSON.stringify(head.frame));
        this.replyTimer = setTimeout(() => this.reconnectNow(), REPLY_TIMEOUT_MS);
    }

    onReply(ev) {
        const item = typeof ev.ref === 'string' ? this.outbox.get(ev.ref) : undefined;
        if (!item) return;
        if (item === this.inflight) {
            this.inflight = null;
            clearTimeout(this.replyTimer);
        }
        if (ev.type === 'error' && item.tries < (MAX_TRIES[ev.code] ?? 0)) {
            item.tries++;
            const wait = ev.code === 'rate_limited'
                ? Math.max(100, Number(ev.retry_after_ms) || 1000)
                : Math.min(8000, 1000 * 2 ** (item.tries - 1));
            item.timer = setTimeout(() => {
                item.timer = null;
                this.pump();
            }, wait);
            this.emit('retrying', item.frame, ev, wait);
            return;
        }
        this.outbox.delete(ev.ref);
        this.emit('reply', item.frame, ev);
        this.pump();
    }

    /**
     * Says the user is typing: at once if the last one went out over a
     * second ago, else once that second is over (so a short burst of keys
     * still shows), unless cancelTyping() comes first.
     */
    typing() {
        if (!this.isOpen || this.typingTimer) return;
        const wait = this.lastTypingAt + TYPING_EVERY_MS - Date.now();
        if (wait <= 0) {
            this.sendTyping();
            return;
        }
        this.typingTimer = setTimeout(() => {
            this.typingTimer = null;
            this.sendTyping();
        }, wait);
    }

    /** The text was sent or cleared: no pending typing indicator. */
    cancelTyping() {
        clearTimeout(this.typingTimer);
        this.typingTimer = null;
    }

    sendTyping() {
        if (!this.isOpen) return;
        this.lastTypingAt = Date.now();
        this.ws.send('{"type":"typing"}');
    }
}
