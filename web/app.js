// chatd web client: the page. The connection itself is in chat.js.
// User text only ever reaches the page through textContent / text nodes.
import { ChatSession, ROOM_RE, api } from './chat.js';

const TOKEN_KEY = 'chatd.token';
const ROOM_KEY = 'chatd.room';
const HISTORY_PAGE = 50;
const EDIT_WINDOW_MS = 60000;
const TYPING_SHOWN_MS = 3000;
const GROUP_MS = 5 * 60000;     // one author's messages this close share a header

const ERRORS = {
    rate_limited: 'You are sending too fast; please wait a moment.',
    too_long: 'That message is too long.',
    empty: 'Empty messages are not sent.',
    forbidden: 'You are not allowed to do that.',
    not_found: 'That message no longer exists.',
    edit_window_closed: 'Messages can only be edited within a minute of sending.',
    unavailable: 'The server could not store that right now. Please try again.',
    bad_request: 'The server did not understand that request.',
};

// ------------------------------------------------------------------ DOM

const $ = (id) => document.getElementById(id);

/** Builds an element. Children are nodes or strings (which become text nodes). */
function h(tag, props = {}, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
    return el;
}

const ui = {
    login: $('login'), loginForm: $('login-form'), loginError: $('login-error'),
    tokenInput: $('token-input'), loginRoom: $('login-room'),
    chat: $('chat'), roomForm: $('room-form'), roomInput: $('room-input'), roomError: $('room-error'),
    me: $('me'), meName: $('me-name'), meRole: $('me-role'), conn: $('conn-status'),
    signOut: $('sign-out'), banner: $('banner'), scroller: $('scroller'), list: $('messages'),
    older: $('load-older'), jump: $('jump'), people: $('people'), onlineList: $('online-list'),
    onlineCount: $('online-count'), typing: $('typing'), notice: $('send-error'),
    composer: $('composer'), text: $('composer-text'), send: $('send'), hint: $('composer-hint'),
};

// ---------------------------------------------------------------- state

let S = null;   // the state of the current room view

function freshState(token, room) {
    return {
        token, room, session: null, me: null,
        messages: new Map(),    // id -> {msg, el, saving, editor}
        gone: new Set(),        // ids deleted (not shown to non-organizers)
        pending: new Map(),     // ref of a message being sent -> {text, el}
        online: new Map(),      // id -> name
        typers: new Map(),      // id -> {name, timer}
        hasMore: false, loadingOlder: false, historyGen: 0,
        skew: 0,                // server clock minus ours, roughly
        unread: 0, noticeTimer: null, statusTimer: null, status: null,
    };
}

const isOrganizer = () => S.me?.role === 'organizer';
const canWrite = () => S.me && S.me.role !== 'viewer';
const serverNow = () => Date.now() + S.skew;

// ------------------------------------------------------------ start-up

function readFragment() {
    const p = new URLSearchParams(location.hash.slice(1));
    return { token: p.get('token'), room: p.get('room') };
}

/** Replaces the fragment: the token never stays in the address bar. */
function writeFragment(room) {
    const hash = room && room !== 'general' ? `#room=${encodeURIComponent(room)}` : '';
    history.replaceState(null, '', location.pathname + location.search + hash);
}

function boot() {
    const f = readFragment();
    if (f.token) sessionStorage.setItem(TOKEN_KEY, f.token.trim());
    let room = sessionStorage.getItem(ROOM_KEY) || 'general';
    if (f.room && ROOM_RE.test(f.room)) room = f.room;
    writeFragment(room);
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) start(token, room);
    else showLogin('', room);
}

function showLogin(error, room) {
    if (S?.session) S.session.close();
    clearTimers();
    S = null;
    document.title = 'chatd';
    ui.chat.hidden = true;
    ui.me.hidden = true;
    ui.roomForm.hidden = true;
    ui.signOut.hidden = true;
    ui.conn.hidden = true;
    ui.login.hidden = false;
    ui.loginError.textContent = error || '';
    ui.loginError.hidden = !error;
    ui.loginRoom.value = room || 'general';
    ui.tokenInput.value = '';
    ui.tokenInput.focus();
}

function start(token, room) {
    if (S?.session) S.session.close();
    clearTimers();
    S = freshState(token, room);
    sessionStorage.setItem(ROOM_KEY, room);
    writeFragment(room);
    document.title = `#${room} · chatd`;
    ui.login.hidden = true;
    ui.chat.hidden = false;
    ui.roomForm.hidden = false;
    ui.signOut.hidden = false;
    ui.conn.hidden = false;
    ui.me.hidden = true;
    ui.roomInput.value = room;
    setRoomError('');
    ui.list.replaceChildren();
    ui.older.hidden = true;
    ui.jump.hidden = true;
    hideBanner();
    showNotice('');
    renderOnline();
    renderTyping();
    ui.text.placeholder = 'Write a message…';
    updateComposer();
    // Opening a link lands in the chat: typing goes to the message box
    // (unless the person already put the focus somewhere on purpose).
    if (!ui.text.disabled && (document.activeElement === document.body || !document.activeElement)) {
        ui.text.focus();
    }
    S.session = new ChatSession({
        token, room,
        handlers: { status: onStatus, welcome: onWelcome, resync: onResync, event: onEvent,
            reply: onReply, retrying: onRetrying },
    });
    S.session.connect();
}

function clearTimers() {
    if (!S) return;
    clearTimeout(S.noticeTimer);
    clearInterval(S.statusTimer);
    for (const t of S.typers.values()) clearTimeout(t.timer);
}

// ------------------------------------------------------- session events

function onStatus(st) {
    S.status = st;
    clearInterval(S.statusTimer);
    ui.conn.dataset.state = st.state;
    ui.people.classList.toggle('stale', st.state !== 'open');
    if (st.state === 'open') {
        ui.conn.textContent = 'Connected';
        hideBanner();
    } else if (st.state === 'connecting') {
        ui.conn.textContent = 'Connecting…';
    } else if (st.state === 'waiting') {
        const tick = () => {
            const s = Math.max(0, Math.ceil((st.retryAt - Date.now()) / 1000));
            ui.conn.textContent = s > 0 ? `Offline · retrying in ${s} s` : 'Offline · retrying…';
        };
        tick();
        S.statusTimer = setInterval(tick, 1000);
        if (st.blocked) {
            showBanner('The server answers, but the live connection keeps failing: a proxy may be ' +
                'blocking WebSockets, or the server does not accept this page’s origin. Still trying…');
        }
    } else if (st.state === 'stopped') {
        ui.conn.textContent = 'Disconnected';
        stopped(st);
        return;
    }
    updatePendingLabels();
    updateComposer();
}

function stopped(st) {
    const room = S.room;
    if (st.reason === 'unauthorized') {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin('Your token is invalid or has expired. Paste a new one to continue.', room);
        return;
    }
    if (st.reason === 'kicked') {
        showBanner('You were removed from the chat by an administrator.', 'Rejoin', () => start(S.token, room));
    } else if (st.reason === 'forbidden') {
        showBanner(`You are not allowed in #${room}${st.message ? ` (${st.message})` : ''}. ` +
            'Pick another room above.');
        ui.roomInput.focus();
        ui.roomInput.select();
    } else {
        showBanner(`Cannot join #${room}${st.message ? `: ${st.message}` : '.'}`);
    }
    updateComposer();
    for (const t of S.typers.values()) clearTimeout(t.timer);
    S.typers.clear();
    renderTyping();
}

function onWelcome(ev, { resumed }) {
    S.me = ev.user;
    ui.me.hidden = false;
    ui.meName.textContent = ev.user.name;
    ui.meRole.textContent = ev.user.role;
    ui.meRole.dataset.role = ev.user.role;
    S.online = new Map((ev.online || []).map((u) => [u.id, u.name]));
    renderOnline();
    updateComposer();
    updatePendingLabels();
    if (!resumed) loadHistory(false);
}

function onResync() {
    loadHistory(true);
}

function onEvent(ev) {
    switch (ev.type) {
    case 'message': {
        const mine = ev.user?.id === S.me?.id;
        const p = mine && ev.ref ? S.pending.get(ev.ref) : undefined;
        if (p) adoptPending(ev.ref, ev);
        else upsert(ev, { live: true });
        stopTyping(ev.user?.id);
        if (!mine && document.hidden) {
            S.unread++;
            document.title = `(${S.unread}) #${S.room} · chatd`;
        }
        break;
    }
    case 'edit': {
        const e = S.messages.get(ev.id);
        if (e) upsert({ ...e.msg, text: ev.text, edited_at: ev.edited_at, seq: ev.seq });
        break;
    }
    case 'delete': removeMessage(ev.id, ev.deleted_at, ev.seq);
        break;
    case 'typing':
        if (ev.user && ev.user.id !== S.me?.id) startTyping(ev.user);
        break;
    case 'join':
        if (ev.user) S.online.set(ev.user.id, ev.user.name);
        renderOnline();
        break;
    case 'leave':
        if (ev.user) {
            S.online.delete(ev.user.id);
            stopTyping(ev.user.id);
        }
        renderOnline();
        break;
    case 'notice':
        addNotice(ev.text);
        break;
    default:
        break;
    }
}

function onReply(frame, ev) {
    if (frame.type === 'message') {
        const p = S.pending.get(frame.ref);
        if (!p) return;
        if (ev.type === 'ack') {
            S.skew = Date.parse(ev.created_at) - Date.now();
            adoptPending(frame.ref, { id: ev.id, seq: ev.seq, created_at: ev.created_at,
                room: S.room, user: { id: S.me.id, name: S.me.name }, text: p.text });
            return;
        }
        S.pending.delete(frame.ref);
        withScroll(() => detach(p.el));
        if (!ui.text.value) ui.text.value = p.text;
        autosize();
        showNotice(errorText(ev, p.text), true);
        return;
    }
    const e = S.messages.get(frame.id);
    if (e) {
        e.saving = false;
        renderMessage(e);
    }
    if (ev.type === 'ack') return;
    // A resent delete of a message that is already gone did its job.
    if (frame.type === 'delete' && ev.code === 'not_found' && (!e || e.msg.deleted_at)) return;
    if (frame.type === 'edit' && ev.code === 'edit_window_closed' && e) {
        e.editable = false;
        renderMessage(e);
    }
    showNotice(errorText(ev), true);
}

function onRetrying(frame, ev, ms) {
    if (ev.code === 'rate_limited') showNotice(`Sending too fast; retrying in ${(ms / 1000).toFixed(1)} s…`);
    else showNotice('The server is busy; retrying…');
}

function errorText(ev, text) {
    if (ev.code === 'too_long' && text !== undefined) {
        return `That message is too long (${[...text].length} characters). Shorten it and send again.`;
    }
    let s = ERRORS[ev.code] || ev.message || 'Something went wrong.';
    if (ev.code === 'rate_limited' && ev.retry_after_ms) s += ` Try again in ${(ev.retry_after_ms / 1000).toFixed(1)} s.`;
    return s;
}

// -------------------------------------------------------------- history

async function loadHistory(reset) {
    const gen = ++S.historyGen;
    const st = S;
    if (reset) {
        for (const e of S.messages.values()) e.el.remove();
        S.messages.clear();
        for (const n of ui.list.querySelectorAll('.notice')) n.remove();
    }
    ui.list.setAttribute('aria-busy', 'true');
    const r = await api(`/api/chat/messages?room=${encodeURIComponent(st.room)}&limit=${HISTORY_PAGE}`, st.token);
    if (st !== S || gen !== S.historyGen) return;
    ui.list.setAttribute('aria-busy', 'false');
    if (!r.ok) {
        historyFailed(r, () => loadHistory(reset));
        return;
    }
    withScroll(() => {
        for (const m of r.json.messages) upsert(m, { quiet: true });
    }, true);
    S.hasMore = Boolean(r.json.has_more);
    ui.older.hidden = !S.hasMore;
}

async function loadOlder() {
    if (S.loadingOlder || !S.hasMore) return;
    const ids = [...S.messages.keys()];
    if (!ids.length) return;
    const st = S;
    S.loadingOlder = true;
    ui.older.textContent = 'Loading…';
    const r = await api(`/api/chat/messages?room=${encodeURIComponent(st.room)}&limit=${HISTORY_PAGE}` +
        `&before=${Math.min(...ids)}`, st.token);
    if (st !== S) return;
    S.loadingOlder = false;
    ui.older.textContent = 'Load older messages';
    if (!r.ok) {
        historyFailed(r, loadOlder);
        return;
    }
    const height = ui.scroller.scrollHeight;
    const top = ui.scroller.scrollTop;
    ui.list.setAttribute('aria-busy', 'true');
    for (const m of r.json.messages) upsert(m, { quiet: true });
    ui.list.setAttribute('aria-busy', 'false');
    ui.scroller.scrollTop = top + (ui.scroller.scrollHeight - height);
    S.hasMore = Boolean(r.json.has_more);
    if (!S.hasMore && document.activeElement === ui.older) ui.scroller.focus({ preventScroll: true });
    ui.older.hidden = !S.hasMore;
}

function historyFailed(r, again) {
    if (r.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin('Your token is invalid or has expired. Paste a new one to continue.', S.room);
        return;
    }
    const why = r.status === 0 ? 'the server cannot be reached'
        : r.status === 403 ? 'you are not allowed in this room'
            : r.status === 503 ? 'the server is temporarily unavailable'
                : `error ${r.status}`;
    showBanner(`Could not load the message history: ${why}.`, 'Try again', () => {
        hideBanner();
        again();
    });
}

// ------------------------------------------------------------- messages

function sortKey(el) {
    return Number(el.dataset.sort);
}

/** Inserts el into the list by its sort key (ids; pending sends last). */
function place(el) {
    const key = sortKey(el);
    const kids = ui.list.children;
    let i = kids.length;
    while (i > 0 && sortKey(kids[i - 1]) > key) i--;
    ui.list.insertBefore(el, kids[i] || null);
}

// What grouping needs to know of each message element: author, time, deleted.
const facts = new WeakMap();

/** A message continues the previous one (same author, soon after): no header. */
function regroup(el) {
    const f = el && facts.get(el);
    if (!f) return;
    const p = facts.get(el.previousElementSibling);
    el.classList.toggle('cont', Boolean(p && p.uid === f.uid && !p.deleted && !f.deleted &&
        f.at >= p.at && f.at - p.at < GROUP_MS));
}

/** Puts el in its place (moving it if it is in the list) and fixes the grouping around it. */
function insert(el) {
    const oldNext = el.parentNode ? el.nextElementSibling : null;
    el.remove();
    place(el);
    regroup(el);
    regroup(el.nextElementSibling);
    regroup(oldNext);
}

function detach(el) {
    const next = el.nextElementSibling;
    el.remove();
    regroup(next);
}

/** Adds or updates a message, unless what is shown is as new or newer. */
function upsert(m, { live = false, quiet = false } = {}) {
    if (!m || typeof m.id !== 'number') return;
    if (S.gone.has(m.id) && !isOrganizer()) return;
    if (m.deleted_at && !isOrganizer()) return;
    let e = S.messages.get(m.id);
    if (e && typeof m.seq === 'number' && typeof e.msg.seq === 'number' && m.seq <= e.msg.seq) return;
    const fresh = !e;
    if (fresh) {
        e = { msg: m, el: h('li', { class: 'msg' }), saving: false, editor: null, editable: true };
        e.el.dataset.sort = String(m.id);
        S.messages.set(m.id, e);
    } else {
        e.msg = { ...e.msg, ...m };
    }
    withScroll(() => {
        renderMessage(e);
        if (fresh) insert(e.el);
    }, e.msg.user?.id === S.me?.id && live);
    if (fresh && live && !quiet && !nearBottom() && e.msg.user?.id !== S.me?.id) ui.jump.hidden = false;
}

function adoptPending(ref, m) {
    const p = S.pending.get(ref);
    S.pending.delete(ref);
    if (S.messages.has(m.id)) {
        withScroll(() => detach(p.el));
        upsert(m);
        return;
    }
    const e = { msg: m, el: p.el, saving: false, editor: null, editable: true };
    e.el.dataset.sort = String(m.id);
    S.messages.set(m.id, e);
    withScroll(() => {
        renderMessage(e);
        insert(e.el);
    }, true);
}

function removeMessage(id, deletedAt, seq) {
    const e = S.messages.get(id);
    if (isOrganizer()) {
        if (e) upsert({ ...e.msg, deleted_at: deletedAt, seq });
        return;
    }
    S.gone.add(id);
    if (!e) return;
    const hadFocus = e.el.contains(document.activeElement);
    S.messages.delete(id);
    withScroll(() => detach(e.el));
    if (hadFocus) ui.text.focus();
}

function fmtTime(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return '';
    const now = new Date();
    const opts = { hour: '2-digit', minute: '2-digit' };
    if (d.toDateString() !== now.toDateString()) Object.assign(opts, { month: 'short', day: 'numeric' });
    if (d.getFullYear() !== now.getFullYear()) opts.year = 'numeric';
    return d.toLocaleString(undefined, opts);
}

const shortTime = (iso) => new Date(iso).toLocaleTimeString(undefined,
    { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });

/** One of 12 avatar colours, from the user id (FNV-1a). */
function colourSlot(id) {
    let x = 0x811c9dc5;
    for (const ch of String(id)) x = Math.imul(x ^ ch.codePointAt(0), 0x01000193) >>> 0;
    return x % 12;
}

function avatar(user) {
    const a = h('span', { class: 'avatar', 'aria-hidden': 'true' }, [...(user?.name || '?')][0].toUpperCase());
    a.dataset.hue = String(colourSlot(user?.id));
    return a;
}

function canEdit(e) {
    const m = e.msg;
    return e.editable && canWrite() && !m.deleted_at && m.user?.id === S.me?.id &&
        serverNow() < Date.parse(m.created_at) + EDIT_WINDOW_MS - 1000;
}

function canDelete(e) {
    return canWrite() && !e.msg.deleted_at && (e.msg.user?.id === S.me?.id || isOrganizer());
}

function renderMessage(e) {
    const m = e.msg;
    const mine = m.user?.id === S.me?.id;
    e.el.className = `msg${mine ? ' own' : ''}${m.deleted_at ? ' deleted' : ''}${e.saving ? ' saving' : ''}`;
    e.el.dataset.id = String(m.id);
    const meta = h('div', { class: 'meta' },
        h('span', { class: 'author' }, m.user?.name ?? '?'),
        h('time', { datetime: m.created_at, title: new Date(m.created_at).toLocaleString() }, fmtTime(m.created_at)),
        m.edited_at && !m.deleted_at
            ? h('span', { class: 'edited', title: `edited ${new Date(m.edited_at).toLocaleString()}` }, '(edited)')
            : null,
        m.deleted_at ? h('span', { class: 'tag deleted-tag', title: new Date(m.deleted_at).toLocaleString() },
            `deleted ${fmtTime(m.deleted_at)}`) : null,
        e.saving ? h('span', { class: 'state' }, 'saving…') : null);
    const body = e.editor ? e.editor.form : h('div', { class: 'text' }, m.text);
    const actions = h('div', { class: 'actions' });
    if (!e.editor) {
        if (canEdit(e)) {
            actions.append(h('button', { type: 'button', class: 'act edit', 'aria-label': `Edit your message “${short(m.text)}”`,
                onclick: () => startEdit(m.id) }, 'Edit'));
        }
        if (canDelete(e)) {
            actions.append(h('button', { type: 'button', class: 'act del',
                'aria-label': `Delete ${mine ? 'your' : `${m.user?.name}’s`} message “${short(m.text)}”`,
                onclick: () => deleteMessage(m.id) }, 'Delete'));
        }
    }
    // Keyboard focus inside the message survives the re-render.
    const had = e.el.contains(document.activeElement) ? document.activeElement : null;
    const hadAct = had?.classList.contains('del') ? '.act.del' : '.act.edit';
    e.el.replaceChildren(gutter(m.user, m.created_at), h('div', { class: 'body' }, meta, body), actions);
    if (had) {
        const to = e.el.contains(had) ? had : e.el.querySelector(hadAct) || e.el.querySelector('.act') || ui.text;
        to.focus({ preventScroll: true });
    }
    facts.set(e.el, { uid: m.user?.id, at: Date.parse(m.created_at), deleted: Boolean(m.deleted_at) });
    regroup(e.el);
}

/** The avatar, or for a continued message the time, shown on hover. */
function gutter(user, at) {
    return h('div', { class: 'gutter' }, avatar(user),
        at ? h('span', { class: 'side-time', 'aria-hidden': 'true' }, shortTime(at)) : null);
}

const short = (s) => {
    const cps = [...s];
    return cps.length > 40 ? `${cps.slice(0, 40).join('')}…` : s;
};

function startEdit(id) {
    const e = S.messages.get(id);
    if (!e || !canEdit(e)) return;
    const ta = h('textarea', { class: 'edit-text', rows: '2', 'aria-label': 'Edit message' });
    ta.value = e.msg.text;
    const cancel = () => finishEdit(e);
    const form = h('form', { class: 'edit-form' }, ta,
        h('div', { class: 'edit-bar' },
            h('button', { type: 'submit', class: 'primary small' }, 'Save'),
            h('button', { type: 'button', class: 'small', onclick: cancel }, 'Cancel'),
            h('span', { class: 'hint' }, 'Enter to save · Esc to cancel')));
    form.addEventListener('submit', (ev) => {
        ev.preventDefault();
        saveEdit(e, ta.value);
    });
    ta.addEventListener('keydown', (ev) => {
        if (ev.key === 'Escape') {
            ev.preventDefault();
            cancel();
        } else if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
            ev.preventDefault();
            form.requestSubmit();
        }
    });
    e.editor = { form };
    renderMessage(e);
    ta.focus();
    ta.setSelectionRange(ta.value.length, ta.value.length);
}

function finishEdit(e) {
    e.editor = null;
    renderMessage(e);
    const btn = e.el.querySelector('.act.edit') || e.el.querySelector('.act');
    (btn || ui.text).focus();
}

function saveEdit(e, text) {
    if (!text.trim()) {
        showNotice('A message cannot be empty; use Delete to remove it.', true);
        return;
    }
    if (text !== e.msg.text) {
        S.session.request({ type: 'edit', id: e.msg.id, text });
        e.saving = true;
    }
    finishEdit(e);
}

function deleteMessage(id) {
    const e = S.messages.get(id);
    if (!e) return;
    // eslint-disable-next-line no-alert
    if (!window.confirm(`Delete this message?\n\n${short(e.msg.text)}`)) return;
    S.session.request({ type: 'delete', id });
    e.saving = true;
    renderMessage(e);
}

/** Every few seconds, drop the Edit control of messages past the window. */
function sweepEditable() {
    if (!S) return;
    for (const e of S.messages.values()) {
        if (!e.editor && e.el.querySelector('.act.edit') && !canEdit(e)) renderMessage(e);
    }
}

function addNotice(text) {
    const ids = [...S.messages.keys()];
    const el = h('li', { class: 'notice' }, h('span', { class: 'notice-label' }, 'Notice'), h('span', {}, text));
    el.dataset.sort = String((ids.length ? Math.max(...ids) : 0) + 0.5);
    withScroll(() => insert(el), true);
}

// --------------------------------------------------------------- sending

function send() {
    const text = ui.text.value;
    if (!text.trim() || !S?.session || !canWrite()) return;
    S.session.cancelTyping();
    const ref = S.session.request({ type: 'message', text });
    const el = h('li', { class: 'msg own pending' });
    el.dataset.sort = 'Infinity';
    const p = { text, el, at: serverNow() };
    S.pending.set(ref, p);
    renderPending(p);
    withScroll(() => insert(el), true);
    ui.text.value = '';
    autosize();
    showNotice('');
}

function renderPending(p) {
    const label = S.session?.isOpen ? 'sending…' : 'waiting for connection…';
    facts.set(p.el, { uid: S.me?.id, at: p.at, deleted: false });
    p.el.replaceChildren(gutter(S.me),
        h('div', { class: 'body' },
            h('div', { class: 'meta' }, h('span', { class: 'author' }, S.me?.name ?? ''),
                h('span', { class: 'state' }, label)),
            h('div', { class: 'text' }, p.text)));
    regroup(p.el);
}

function updatePendingLabels() {
    for (const p of S.pending.values()) renderPending(p);
}

/** Viewers cannot write; everyone else may type and send, offline too (sends wait in the outbox). */
function updateComposer() {
    const st = S?.status?.state;
    const viewer = S?.me?.role === 'viewer';
    ui.text.disabled = viewer || st === 'stopped';
    ui.send.disabled = !canWrite() || st === 'stopped';
    let hint = 'Enter to send · Shift+Enter for a new line';
    if (viewer) hint = 'You are a viewer: you can read this room but not post.';
    else if (st === 'stopped') hint = 'Disconnected.';
    else if (!S?.me) hint = 'Connecting…';
    else if (st !== 'open') hint = 'Offline: messages are sent when the connection is back.';
    ui.hint.textContent = hint;
}

function autosize() {
    ui.text.style.height = 'auto';
    ui.text.style.height = `${Math.min(ui.text.scrollHeight, 200)}px`;
}

// ---------------------------------------------------------------- typing

function startTyping(user) {
    const t = S.typers.get(user.id);
    if (t) clearTimeout(t.timer);
    const timer = setTimeout(() => stopTyping(user.id), TYPING_SHOWN_MS);
    S.typers.set(user.id, { name: user.name, timer });
    renderTyping();
}

function stopTyping(id) {
    const t = S.typers.get(id);
    if (!t) return;
    clearTimeout(t.timer);
    S.typers.delete(id);
    renderTyping();
}

function renderTyping() {
    const names = S ? [...S.typers.values()].map((t) => t.name) : [];
    let s = '';
    if (names.length === 1) s = `${names[0]} is typing…`;
    else if (names.length === 2) s = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) s = 'Several people are typing…';
    ui.typing.textContent = s;
}

// ------------------------------------------------------------ presence

function renderOnline() {
    const users = S ? [...S.online].sort((a, b) => a[1].localeCompare(b[1])) : [];
    ui.onlineCount.textContent = String(users.length);
    ui.onlineList.replaceChildren(...users.map(([id, name]) => h('li', {},
        avatar({ id, name }), h('span', { class: 'name' }, name),
        id === S.me?.id ? h('span', { class: 'you' }, '(you)') : null)));
}

// ------------------------------------------------- banners and notices

function showBanner(text, action, onAction) {
    ui.banner.replaceChildren(h('span', {}, text));
    if (action) ui.banner.append(h('button', { type: 'button', class: 'small', onclick: onAction }, action));
    ui.banner.hidden = false;
}

function hideBanner() {
    ui.banner.hidden = true;
    ui.banner.replaceChildren();
}

function showNotice(text, isError = false) {
    clearTimeout(S?.noticeTimer);
    ui.notice.textContent = text;
    ui.notice.classList.toggle('is-error', isError);
    if (text && S) S.noticeTimer = setTimeout(() => { ui.notice.textContent = ''; }, isError ? 10000 : 4000);
}

function setRoomError(text) {
    ui.roomError.textContent = text;
    ui.roomError.hidden = !text;
    ui.roomInput.setAttribute('aria-invalid', text ? 'true' : 'false');
}

// -------------------------------------------------------------- scrolling

function nearBottom() {
    const s = ui.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

/** Runs fn (a DOM change) and keeps the view at the bottom if it was there. */
function withScroll(fn, force = false) {
    const stick = force || nearBottom();
    fn();
    if (stick) {
        ui.scroller.scrollTop = ui.scroller.scrollHeight;
        ui.jump.hidden = true;
    }
}

// -------------------------------------------------------------- wiring

ui.loginForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = ui.tokenInput.value.trim().replace(/^bearer\s+/i, '');
    const room = ui.loginRoom.value.trim() || 'general';
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)) {
        ui.loginError.textContent = 'That does not look like a token (three dot-separated parts).';
        ui.loginError.hidden = false;
        ui.tokenInput.focus();
        return;
    }
    if (!ROOM_RE.test(room)) {
        ui.loginError.textContent = 'Room names are 1 to 64 letters, digits, “_”, “.” or “-”.';
        ui.loginError.hidden = false;
        ui.loginRoom.focus();
        return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    start(token, room);
});

// A token has no line breaks: Enter in its box submits.
ui.tokenInput.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) {
        ev.preventDefault();
        ui.loginForm.requestSubmit();
    }
});

ui.roomForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const room = ui.roomInput.value.trim();
    if (!ROOM_RE.test(room)) {
        setRoomError('Use 1–64 letters, digits, _ . or -');
        ui.roomInput.focus();
        return;
    }
    setRoomError('');
    if (S && (room !== S.room || S.status?.state === 'stopped')) start(S.token, room);
    ui.text.focus();
});

ui.roomInput.addEventListener('input', () => {
    if (ROOM_RE.test(ui.roomInput.value.trim())) setRoomError('');
});

ui.signOut.addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('', S?.room);
});

ui.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    send();
    ui.text.focus();
});

ui.text.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        if (!ui.send.disabled) send();
    }
});

ui.text.addEventListener('input', () => {
    autosize();
    if (!S?.session || !canWrite()) return;
    if (ui.text.value.trim()) S.session.typing();
    else S.session.cancelTyping();
});

ui.older.addEventListener('click', loadOlder);
ui.scroller.addEventListener('scroll', () => {
    if (ui.scroller.scrollTop < 40 && S?.hasMore) loadOlder();
    if (nearBottom()) ui.jump.hidden = true;
}, { passive: true });
ui.jump.addEventListener('click', () => {
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
    ui.jump.hidden = true;
    ui.text.focus();
});

document.addEventListener('visibilitychange', () => {
    if (!document.hidden && S) {
        S.unread = 0;
        document.title = `#${S.room} · chatd`;
    }
});

window.addEventListener('hashchange', () => {
    const f = readFragment();
    if (!f.token && !f.room) return;
    if (f.token) sessionStorage.setItem(TOKEN_KEY, f.token.trim());
    const room = f.room && ROOM_RE.test(f.room) ? f.room : (S?.room || 'general');
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token && (f.token || !S || room !== S.room)) start(token, room);
    else writeFragment(room);
});

// Wide screens show the online list; phones fold it away.
const wide = window.matchMedia('(min-width: 760px)');
ui.people.open = wide.matches;
wide.addEventListener('change', () => { ui.people.open = wide.matches; });

setInterval(sweepEditable, 2000);
boot();
