// SIGTERM while a message is being stored (its room's row held by another
// transaction, so the commit waits): the draining worker waits for the
// commit and announces the message before it exits, instead of leaving
// with the batch in flight (which stored nothing, or, had the commit
// raced the exit, stored a message nobody was told of). The sender was
// closed with 1001 meanwhile: as after any close, it resends with the
// same ref and gets the stored message back, once. The same for an edit,
// which the store sends outside the message batches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { env, openWs, psql, sleep, waitFor } from '../lib/harness.mjs';
import { rnd, startPair } from './traffic.mjs';

const DRAIN_S = 10;
const HOLD_S = 3;

/**
 * Holds the room's row in another transaction for HOLD_S seconds, lets
 * send() put a write in flight behind it (waiting on the lock, its query
 * like `fn`), sends SIGTERM to server a, and checks the worker waits for
 * the commit and the watcher hears of it. Resolves with the event heard
 * and the sender's close.
 */
async function sigtermWhileHeld(a, room, sender, watcher, fn, send, heard) {
    const holder = spawn('psql', ['-X', '-q', env.pgTestDsn, '-c',
        `BEGIN; SELECT 1 FROM rooms WHERE name = '${room}' FOR UPDATE; SELECT pg_sleep(${HOLD_S}); COMMIT;`],
    { stdio: 'ignore' });
    const held = new Promise((resolve) => holder.once('exit', resolve));
    const others = 'pid <> pg_backend_pid()';
    await waitFor(async () => Number(await psql(
        `SELECT count(*) FROM pg_stat_activity WHERE ${others} AND state = 'active'
            AND query LIKE '%pg_sleep(${HOLD_S})%'`)) > 0, 5000, 50, 'the row to be held');

    await send();
    // The write is in flight: waiting for the row.
    await waitFor(async () => Number(await psql(
        `SELECT count(*) FROM pg_stat_activity WHERE ${others} AND wait_event_type = 'Lock'
            AND query LIKE '%${fn}%'`)) > 0,
    5000, 50, `the ${fn} call to wait for the row`);

    const sigtermAt = Date.now();
    a.kill('SIGTERM');
    const exited = a.waitExit((DRAIN_S + 2) * 1000).then((e) => ({ ...e, afterMs: Date.now() - sigtermAt }));
    const closed = await sender.closed;
    const announced = await watcher.next(heard, (HOLD_S + 5) * 1000);
    const { afterMs, ...exit } = await exited;
    const heldFor = await held.then(() => Date.now() - sigtermAt);
    assert.deepEqual(exit, { code: 0, signal: null });
    // The worker itself ended well (the master exits 0 either way).
    assert.match(a.logs(), /worker exited slot=0 pid=\d+ exit=0/);
    assert.ok(afterMs >= heldFor - 200, `exited ${afterMs} ms after SIGTERM, before the row was let go (${heldFor} ms)`);
    assert.equal(closed.code, 1001);
    return { announced, closed };
}

/** Two servers, a sender on a (to be stopped) and a watcher on b, and the room's first message stored. */
async function roomWithFirstMessage(t) {
    const [a, b] = await startPair(t, { workers: 1, env: { CHAT_DRAIN_TIMEOUT_S: DRAIN_S } });
    const room = `stc-${rnd()}`;
    const sender = await openWs(a.wsUrl(`/api/chat?room=${room}`), { token: a.token({ sub: 'sam', name: 'Sam' }) });
    const watcher = await openWs(b.wsUrl(`/api/chat?room=${room}`), { token: b.token({ sub: 'wes', name: 'Wes' }) });
    t.after(() => { sender.close(); watcher.close(); });
    // The room's row exists once its first message is stored.
    await sender.send({ type: 'message', text: 'first', ref: 'm1' });
    const first = await sender.next((ev) => ev.ref === 'm1', 10000);
    assert.equal(first.type, 'ack');
    await watcher.next((ev) => ev.type === 'message' && ev.text === 'first', 10000);
    return { a, b, room, sender, watcher, first };
}

test('SIGTERM with a commit waiting: the worker waits for it and announces the message', async (t) => {
    const { a, b, room, sender, watcher } = await roomWithFirstMessage(t);
    const { announced, closed } = await sigtermWhileHeld(a, room, sender, watcher, 'chat_post',
        () => sender.send({ type: 'message', text: 'held', ref: 'm2' }),
        (ev) => ev.type === 'message' && ev.text === 'held');
    assert.equal(announced.ref, 'm2');
    t.diagnostic(`sender closed ${closed.code}; announced seq ${announced.seq}`);

    // Stored once, and a resend with the same ref gets that message.
    const rows = await psql(`SELECT id FROM messages WHERE room = '${room}' AND ref = 'm2'`);
    assert.equal(rows.trim().split('\n').filter(Boolean).length, 1, rows);
    const again = await openWs(b.wsUrl(`/api/chat?room=${room}`), { token: b.token({ sub: 'sam', name: 'Sam' }) });
    t.after(() => again.close());
    await again.send({ type: 'message', text: 'held', ref: 'm2' });
    const ack = await again.next((ev) => ev.ref === 'm2' && ev.type !== 'message', 10000);
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    assert.equal(ack.id, announced.id);
});

test('SIGTERM with an edit waiting for its commit: the worker waits for it and announces the edit', async (t) => {
    const { a, room, sender, watcher, first } = await roomWithFirstMessage(t);
    const { announced } = await sigtermWhileHeld(a, room, sender, watcher, 'chat_edit',
        () => sender.send({ type: 'edit', id: first.id, text: 'first, edited', ref: 'e1' }),
        (ev) => ev.type === 'edit' && ev.id === first.id);
    assert.equal(announced.text, 'first, edited');
});
