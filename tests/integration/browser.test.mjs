// The web client (web/) in a real browser: Debian's chromium, headless,
// driven by playwright-core. Screenshots go to build/screenshots/ for a
// person to look at.
//
// Every wait is a Playwright locator/function wait on the page's state;
// "exactly once" is checked behind a barrier message sent after the one
// counted (events of a room arrive in seq order).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ROOT, mintToken, openWs, redisCli, startChatd, waitFor } from '../lib/harness.mjs';

const WEB = path.join(ROOT, 'web');
const SHOTS = path.join(ROOT, 'build/screenshots');
const CHROMIUM = process.env.CHATD_CHROMIUM || '/usr/bin/chromium';
const WAIT = 10000;   // ms, upper bound for anything the page should do

let browser;

before(async () => {
    fs.mkdirSync(SHOTS, { recursive: true });
    if (!fs.existsSync(CHROMIUM)) {
        throw new Error(`${CHROMIUM} not found: install Debian's chromium (scripts/deps.sh does)`);
    }
    // Playwright gives each launch a fresh temporary --user-data-dir.
    browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
});

after(async () => {
    await browser?.close();
});

const uniqueRoom = (tag) => `web-${tag}-${crypto.randomBytes(4).toString('hex')}`;

function chatd(t, env = {}) {
    return startChatd({ t, env: { CHAT_STATIC_DIR: WEB, ...env } });
}

/**
 * Opens the client for a user in a fresh browser context (its own
 * sessionStorage). Page errors and console errors fail the test at the end.
 */
async function openClient(t, srv, { room, claims, viewport = { width: 1100, height: 720 }, wait = true,
    token, fragment, contextOptions = {}, setup } = {}) {
    const context = await browser.newContext({ viewport, ...contextOptions });
    t.after(() => context.close());
    const page = await context.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
        // A refused or dropped WebSocket is reported by the browser itself.
        if (m.type() === 'error' && !/WebSocket|Failed to load resource/.test(m.text())) {
            problems.push(`console: ${m.text()}`);
        }
    });
    page.on('dialog', (d) => d.accept());
    t.after(() => assert.deepEqual(problems, [], 'no errors in the page'));
    if (setup) await setup(page, context);
    const tok = token ?? mintToken(srv.secret, { ttl: 3600, ...claims });
    const frag = fragment ?? `#token=${tok}${room ? `&room=${room}` : ''}`;
    await page.goto(srv.url(`/${frag}`));
    if (wait) await connected(page);
    return { page, context, token: tok };
}

const connected = (page) => page.locator('#conn-status[data-state="open"]').waitFor({ timeout: WAIT });

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The list item of a stored (not pending) message whose text is exactly text. */
const msg = (page, text) => page.locator('#messages li.msg:not(.pending)')
    .filter({ has: page.locator('.text', { hasText: new RegExp(`^${escapeRe(text)}$`) }) });

async function waitTextContent(page, selector, re) {
    await page.waitForFunction(([sel, src]) => new RegExp(src).test(document.querySelector(sel)?.textContent ?? ''),
        [selector, re.source], { timeout: WAIT });
}

async function sendFrom(page, text) {
    await page.locator('#composer-text').fill(text);
    await page.locator('#composer-text').press('Enter');
    await msg(page, text).waitFor({ timeout: WAIT });
}

/** Sends a barrier from page `from` and waits for it on every page: all earlier events have arrived. */
async function barrier(from, ...pages) {
    const text = `barrier ${crypto.randomBytes(3).toString('hex')}`;
    await sendFrom(from, text);
    for (const p of pages) await msg(p, text).waitFor({ timeout: WAIT });
}

const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, name) });

async function noHorizontalScroll(page) {
    const { sw, cw } = await page.evaluate(() => ({
        sw: document.documentElement.scrollWidth, cw: document.documentElement.clientWidth,
    }));
    assert.ok(sw <= cw, `no horizontal scroll (scrollWidth ${sw} > clientWidth ${cw})`);
}

// ------------------------------------------------------------------------

test('two users chat: history, presence, typing, edit, delete, notice, reload, phone layout, kick', async (t) => {
    const srv = await chatd(t, { CHAT_RATE_PER_SEC: 200, CHAT_RATE_BURST: 200 });
    const room = uniqueRoom('chat');

    // 60 older messages, so that history has a second page. One at a time:
    // requests sent together may be stored in any order.
    const seeder = await openWs(srv.wsUrl(`/api/chat?room=${room}`),
        { token: mintToken(srv.secret, { sub: 'carol', name: 'Carol' }) });
    for (let i = 1; i <= 60; i++) {
        await seeder.send({ type: 'message', text: `seed ${i}`, ref: `s${i}` });
        await seeder.next('ack');
    }
    await seeder.close();

    const a = await openClient(t, srv, { room, claims: { sub: 'alice', name: 'Alice', role: 'member' } });
    const A = a.page;
    assert.doesNotMatch(A.url(), /token/, 'the token left the address bar');
    assert.equal(new URL(A.url()).hash, `#room=${room}`);
    assert.equal(await A.locator('#me-role').textContent(), 'member');
    assert.equal(await A.locator('#me-name').textContent(), 'Alice');

    // The newest 50 are shown; older ones come with "Load older messages".
    await msg(A, 'seed 60').waitFor();
    await msg(A, 'seed 11').waitFor();
    assert.equal(await msg(A, 'seed 10').count(), 0);
    await A.locator('#load-older').waitFor();
    await A.locator('#scroller').evaluate((el) => { el.scrollTop = 0; });   // scrolled to the top
    await msg(A, 'seed 1').waitFor({ timeout: WAIT });
    await A.locator('#load-older').waitFor({ state: 'hidden' });
    assert.equal(await A.locator('#messages li.msg').count(), 60);

    // Presence: Bob (an organizer) joins; each sees the other.
    const b = await openClient(t, srv, { room, claims: { sub: 'bob', name: 'Bob', role: 'organizer' } });
    const B = b.page;
    assert.equal(await B.locator('#me-role').textContent(), 'organizer');
    await A.locator('#online-list li', { hasText: 'Bob' }).waitFor({ timeout: WAIT });
    await B.locator('#online-list li', { hasText: 'Alice' }).waitFor({ timeout: WAIT });

    // Typing shows on the other page, then the message; the indicator goes.
    await A.locator('#composer-text').pressSequentially('Hello Bob');
    await waitTextContent(B, '#typing', /^Alice is typing…$/);
    await A.locator('#composer-text').press('Enter');
    await msg(B, 'Hello Bob').waitFor({ timeout: WAIT });
    await msg(A, 'Hello Bob').waitFor({ timeout: WAIT });
    await waitTextContent(B, '#typing', /^$/);
    assert.equal(await A.locator('#composer-text').inputValue(), '', 'the composer is cleared');

    // Shift+Enter is a new line; user text is text, never markup.
    const reply = 'Hi Alice! <b>not bold</b> <img src=x onerror=alert(1)>';
    await B.locator('#composer-text').pressSequentially('Hi Alice! <b>not bold</b>');
    await B.locator('#composer-text').press('Shift+Enter');
    assert.equal(await B.locator('#composer-text').inputValue(), 'Hi Alice! <b>not bold</b>\n');
    await B.locator('#composer-text').fill(reply);
    await B.locator('#composer-text').press('Enter');
    await msg(A, reply).waitFor({ timeout: WAIT });
    assert.equal(await msg(A, reply).locator('.text b, .text img').count(), 0);

    // An indicator expires by itself when the typist stops (about 3 s).
    await B.locator('#composer-text').pressSequentially('thinking');
    await waitTextContent(A, '#typing', /^Bob is typing…$/);
    await waitTextContent(A, '#typing', /^$/);
    await B.locator('#composer-text').fill('');

    await msg(A, 'Hello Bob').scrollIntoViewIfNeeded();
    await shot(A, 'chat-member.png');

    // Edit: Escape cancels, Enter saves; both pages show "(edited)".
    const mine = msg(A, 'Hello Bob');
    await mine.hover();
    await mine.locator('.act.edit').click();
    const editor = A.locator('#messages .edit-text');
    await editor.fill('never saved');
    await editor.press('Escape');
    await editor.waitFor({ state: 'detached' });
    await msg(A, 'Hello Bob').waitFor();
    assert.equal(await A.evaluate(() => document.activeElement?.classList.contains('edit')), true,
        'focus returns to the Edit button');
    await mine.locator('.act.edit').click();
    await editor.fill('Hello Bob (fixed typo)');
    await editor.press('Enter');
    for (const p of [A, B]) {
        const m = msg(p, 'Hello Bob (fixed typo)');
        await m.waitFor({ timeout: WAIT });
        await m.locator('.edited').waitFor({ timeout: WAIT });
    }
    // Only the author's messages have an Edit control; Bob can delete any.
    assert.equal(await msg(B, 'Hello Bob (fixed typo)').locator('.act.edit').count(), 0);
    assert.equal(await msg(B, 'Hello Bob (fixed typo)').locator('.act.del').count(), 1);
    assert.equal(await msg(A, reply).locator('.act').count(), 0);

    // Delete: gone for Alice, kept and marked for Bob the organizer.
    await sendFrom(A, 'oops, wrong room');
    await msg(B, 'oops, wrong room').waitFor({ timeout: WAIT });
    await msg(A, 'oops, wrong room').hover();
    await msg(A, 'oops, wrong room').locator('.act.del').click();
    await msg(A, 'oops, wrong room').waitFor({ state: 'detached', timeout: WAIT });
    await B.locator('#messages li.msg.deleted', { hasText: 'oops, wrong room' }).waitFor({ timeout: WAIT });
    await B.locator('#messages li.msg.deleted .deleted-tag').waitFor();

    // A too long message is refused with a clear message, and its text is kept.
    const long = 'x'.repeat(2001);
    await A.locator('#composer-text').fill(long);
    await A.locator('#composer-text').press('Enter');
    await waitTextContent(A, '#send-error', /too long \(2001 characters\)/);
    assert.equal(await A.locator('#composer-text').inputValue(), long);
    await A.locator('#composer-text').fill('');

    // An admin notice shows on both, set apart from messages.
    await redisCli('PUBLISH', `${srv.prefix}control`,
        JSON.stringify({ op: 'notice', room, text: 'Maintenance at 18:00' }));
    for (const p of [A, B]) await p.locator('#messages li.notice', { hasText: 'Maintenance at 18:00' }).waitFor({ timeout: WAIT });
    await shot(B, 'organizer-deleted.png');

    // A reload keeps the session (sessionStorage) and the history.
    await A.reload();
    await connected(A);
    await msg(A, 'Hello Bob (fixed typo)').locator('.edited').waitFor({ timeout: WAIT });
    await msg(A, reply).waitFor();
    assert.equal(await msg(A, 'oops, wrong room').count(), 0, 'a deleted message stays deleted');
    assert.doesNotMatch(A.url(), /token/);
    // ...and Bob's (an organizer's) history still has it, marked.
    await B.reload();
    await connected(B);
    await B.locator('#messages li.msg.deleted', { hasText: 'oops, wrong room' }).waitFor({ timeout: WAIT });

    // A phone: the online list folds away, nothing scrolls sideways.
    const d = await openClient(t, srv, {
        room, claims: { sub: 'dave', name: 'Dave', role: 'member' },
        viewport: { width: 390, height: 844 }, contextOptions: { isMobile: true, hasTouch: true, deviceScaleFactor: 2 },
    });
    const D = d.page;
    await msg(D, reply).waitFor({ timeout: WAIT });
    await sendFrom(D, 'On my phone: a long line with a_very_long_unbroken_word_that_must_wrap_instead_of_scrolling_sideways_0123456789');
    await noHorizontalScroll(D);
    await shot(D, 'mobile.png');
    await D.setViewportSize({ width: 360, height: 740 });
    await noHorizontalScroll(D);

    // Kicked: told so, and no reconnecting.
    await redisCli('PUBLISH', `${srv.prefix}control`, JSON.stringify({ op: 'kick', user: 'dave' }));
    await D.locator('#banner', { hasText: 'You were removed' }).waitFor({ timeout: WAIT });
    await D.locator('#conn-status[data-state="stopped"]').waitFor();
    await shot(D, 'mobile-kicked.png');
    await A.locator('#online-list li', { hasText: 'Dave' }).waitFor({ state: 'detached', timeout: WAIT });
    assert.equal(await D.locator('#conn-status').getAttribute('data-state'), 'stopped');
});

test('access problems are explained instead of retried forever', async (t) => {
    const srv = await chatd(t);
    const room = uniqueRoom('auth');

    // A bad token: back to the token form, with the reason.
    const bad = mintToken(srv.secret, { sub: 'mallory', badSignature: true });
    const { page: P1 } = await openClient(t, srv, { room, token: bad, wait: false });
    await P1.locator('#login-error', { hasText: 'invalid or has expired' }).waitFor({ timeout: WAIT });
    assert.doesNotMatch(P1.url(), /token/);
    await shot(P1, 'login-bad-token.png');

    // Paste a good one into the form: the keyboard path (Enter submits).
    await P1.locator('#token-input').fill(mintToken(srv.secret, { sub: 'erin', name: 'Erin', ttl: 600 }));
    await P1.locator('#login-room').fill(room);
    await P1.locator('#login-room').press('Enter');
    await connected(P1);
    assert.equal(await P1.locator('#me-name').textContent(), 'Erin');

    // A token limited to other rooms.
    const { page: P2 } = await openClient(t, srv, {
        room, wait: false, claims: { sub: 'frank', name: 'Frank', rooms: ['elsewhere'], ttl: 600 },
    });
    await P2.locator('#banner', { hasText: 'not allowed' }).waitFor({ timeout: WAIT });
    await P2.locator('#conn-status[data-state="stopped"]').waitFor();
    // Choosing an allowed room from there works.
    await P2.locator('#room-input').fill('elsewhere');
    await P2.locator('#room-input').press('Enter');
    await connected(P2);
    assert.equal(new URL(P2.url()).hash, '#room=elsewhere');

    // A bad room name is refused before anything is sent.
    await P2.locator('#room-input').fill('no spaces');
    await P2.locator('#room-input').press('Enter');
    await P2.locator('#room-error', { hasText: 'letters' }).waitFor();

    // A viewer reads but cannot write.
    const { page: P3 } = await openClient(t, srv, { room, claims: { sub: 'vic', name: 'Vic', role: 'viewer', ttl: 600 } });
    assert.equal(await P3.locator('#me-role').textContent(), 'viewer');
    assert.equal(await P3.locator('#composer-text').isDisabled(), true);
    await sendFrom(P1, 'from erin');
    await msg(P3, 'from erin').waitFor({ timeout: WAIT });

    // Over the rate limit (burst 10): sends wait and go out in order, once each.
    const burst = Array.from({ length: 14 }, (_, i) => `burst ${i + 1}`);
    for (const text of burst) {
        await P1.locator('#composer-text').fill(text);
        await P1.locator('#composer-text').press('Enter');
    }
    await msg(P3, 'burst 14').waitFor({ timeout: WAIT });
    await P1.locator('#messages li.msg.pending').waitFor({ state: 'detached', timeout: WAIT });
    for (const p of [P1, P3]) {
        const texts = await p.locator('#messages li.msg .text').allTextContents();
        assert.deepEqual(texts.filter((x) => x.startsWith('burst ')), burst);
    }

    // No token at all: the form.
    const { page: P4 } = await openClient(t, srv, { fragment: '', wait: false });
    await P4.locator('#token-input').waitFor();
    assert.equal(await P4.evaluate(() => document.activeElement?.id), 'token-input');
    await shot(P4, 'login.png');
});

test('a server restart loses nothing: resend by ref, catch-up with since', async (t) => {
    const room = uniqueRoom('restart');
    const srv1 = await chatd(t);
    const port = srv1.port;
    const same = { CHAT_PORT: port };

    // Page A's WebSocket goes through a gate the test opens and closes;
    // a closed gate refuses new connections (open ones are left alone).
    let gateOpen = true;
    const gate = (page) => page.routeWebSocket(/\/api\/chat\?/, (ws) => {
        if (gateOpen) ws.connectToServer();
        else ws.close({ code: 1011, reason: 'gate closed' });
    });
    const claimsA = { sub: 'alice', name: 'Alice', ttl: 3600 };
    const claimsB = { sub: 'bob', name: 'Bob', ttl: 3600 };
    const a = await openClient(t, srv1, { room, claims: claimsA, token: mintToken(srv1.secret, claimsA), setup: gate });
    const b = await openClient(t, srv1, { room, token: mintToken(srv1.secret, claimsB) });
    const A = a.page;
    const B = b.page;
    await sendFrom(A, 'before the restart');
    await msg(B, 'before the restart').waitFor({ timeout: WAIT });

    // Stop the server: both pages lose their connection.
    gateOpen = false;
    await srv1.stop();
    for (const p of [A, B]) await p.locator('#conn-status[data-state="waiting"]').waitFor({ timeout: WAIT });

    // Bob sends while the server is down: the send waits in his outbox.
    await B.locator('#composer-text').fill('sent while the server was down');
    await B.locator('#composer-text').press('Enter');
    await B.locator('#messages li.msg.pending', { hasText: 'sent while the server was down' }).waitFor();
    await B.locator('#messages li.msg.pending .state', { hasText: 'waiting for connection' }).waitFor();
    await shot(B, 'offline-pending.png');

    // Same port, same secret: Bob reconnects and his send goes through once.
    const srv2 = await startChatd({ t, secret: srv1.secret, env: { CHAT_STATIC_DIR: WEB, ...same } });
    assert.equal(srv2.port, port);
    await connected(B);
    await msg(B, 'sent while the server was down').waitFor({ timeout: WAIT });
    await B.locator('#messages li.msg.pending').waitFor({ state: 'detached', timeout: WAIT });
    // Alice is still held off: Bob sends again while she is away.
    await sendFrom(B, 'sent while Alice was away');
    assert.notEqual(await A.locator('#conn-status').getAttribute('data-state'), 'open');

    // Let Alice in: she catches up (since=) with both, each exactly once.
    gateOpen = true;
    await connected(A);
    await msg(A, 'sent while the server was down').waitFor({ timeout: WAIT });
    await msg(A, 'sent while Alice was away').waitFor({ timeout: WAIT });
    await barrier(B, A, B);
    for (const p of [A, B]) {
        for (const text of ['before the restart', 'sent while the server was down', 'sent while Alice was away']) {
            assert.equal(await msg(p, text).count(), 1, `"${text}" exactly once`);
        }
    }
    // The history agrees (stored once).
    await A.reload();
    await connected(A);
    await msg(A, 'sent while Alice was away').waitFor({ timeout: WAIT });
    assert.equal(await msg(A, 'sent while the server was down').count(), 1);
    await shot(A, 'after-restart.png');
});

test('missed events are caught up: a seq gap reconnects with since, resync reloads history', async (t) => {
    const srv = await chatd(t);
    const room = uniqueRoom('gap');
    // Page A's WebSocket goes through the test, which can drop frames from
    // the server or slip in its own.
    let drop = null;
    let routeA = null;
    const dropped = [];
    const setup = (page) => page.routeWebSocket(/\/api\/chat\?/, (ws) => {
        routeA = ws;
        const server = ws.connectToServer();
        server.onMessage((m) => {
            let ev;
            try {
                ev = JSON.parse(m);
            } catch { /* passed on */ }
            if (drop && ev && drop(ev)) dropped.push(ev);
            else ws.send(m);
        });
    });
    const { page: A } = await openClient(t, srv, { room, claims: { sub: 'alice', name: 'Alice' }, setup });
    // B's clock can be moved on (edit window).
    const { page: B } = await openClient(t, srv, {
        room, claims: { sub: 'bob', name: 'Bob' }, setup: (page) => page.clock.install(),
    });
    await sendFrom(B, 'first');
    await msg(A, 'first').waitFor({ timeout: WAIT });

    // A message lost on the way: A notices at the next seq and catches up.
    drop = (ev) => ev.type === 'message' && ev.text === 'lost on the way';
    await sendFrom(B, 'lost on the way');
    await waitFor(() => dropped.length === 1, WAIT, 20, 'the frame was dropped');
    drop = null;
    assert.equal(await msg(A, 'lost on the way').count(), 0);
    await sendFrom(B, 'after the gap');
    await msg(A, 'after the gap').waitFor({ timeout: WAIT });
    await msg(A, 'lost on the way').waitFor({ timeout: WAIT });
    await barrier(B, A);
    const texts = await A.locator('#messages li.msg .text').allTextContents();
    assert.deepEqual(texts.filter((x) => !x.startsWith('barrier')), ['first', 'lost on the way', 'after the gap']);

    // An edit lost, then the server says resync: A reloads the history.
    drop = (ev) => ev.type === 'edit';
    const first = msg(B, 'first');
    await first.hover();
    await first.locator('.act.edit').click();
    await B.locator('#messages .edit-text').fill('first, edited');
    await B.locator('#messages .edit-text').press('Enter');
    await msg(B, 'first, edited').waitFor({ timeout: WAIT });
    await waitFor(() => dropped.length === 2, WAIT, 20, 'the edit was dropped');
    drop = null;
    assert.equal(await msg(A, 'first, edited').count(), 0);
    routeA.send(JSON.stringify({ type: 'resync', last_seq: dropped[1].seq }));
    await msg(A, 'first, edited').locator('.edited').waitFor({ timeout: WAIT });
    await barrier(B, A);
    for (const text of ['first, edited', 'lost on the way', 'after the gap']) {
        assert.equal(await msg(A, text).count(), 1, `"${text}" exactly once`);
    }

    // A minute after sending, the Edit control goes; Delete stays.
    assert.equal(await msg(B, 'after the gap').locator('.act.edit').count(), 1);
    await B.clock.fastForward(61000);
    await msg(B, 'after the gap').locator('.act.edit').waitFor({ state: 'detached', timeout: WAIT });
    assert.equal(await msg(B, 'after the gap').locator('.act.del').count(), 1);
});
