// A join that races a welcome (PROTOCOL.md section 3: the welcome's online
// list, then join and leave events): while a new connection waits for its
// room's position (PostgreSQL held back here by a lock on `rooms`), another
// user joins after the first one's online list was taken. The waiting
// session keeps that join and sends it right after its welcome, so the
// client's view of who is online is complete.
//
// In the fault suite (run one file at a time): the lock on `rooms` stops
// every writer of the test database while it is held.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { WebSocket, WsClient, env, psql, redisCli, startChatd, waitFor } from '../lib/harness.mjs';
import { NO_RATE, rnd } from './traffic.mjs';

const HOLD_S = 3;

// A client whose upgrade is answered together with its welcome: it cannot
// wait for `open` before listening.
function connect(srv, room, claims) {
    const ws = new WebSocket(srv.wsUrl(`/api/chat?room=${room}`), undefined,
        { headers: { Authorization: `Bearer ${srv.token(claims)}` }, handshakeTimeout: 15000 });
    return new WsClient(ws);
}

test('a join that arrives while a session waits for its welcome is sent after the welcome', async (t) => {
    const srv = await startChatd({ t, workers: 1, env: NO_RATE });
    const room = `ww-${rnd()}`;
    const key = `${srv.prefix}online:${room}`;

    const holder = spawn('psql', ['-X', '-q', env.pgTestDsn, '-c',
        `BEGIN; LOCK TABLE rooms IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(${HOLD_S}); COMMIT;`],
    { stdio: 'ignore' });
    const released = new Promise((resolve) => holder.once('exit', resolve));
    await waitFor(async () => Number(await psql(
        `SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
          WHERE c.relname = 'rooms' AND l.mode = 'AccessExclusiveLock' AND l.granted`)) > 0,
    5000, 50, 'the lock on rooms');

    const ann = connect(srv, room, { sub: 'ann', name: 'Ann' });
    t.after(() => ann.terminate());
    // Ann is counted online (her join's answer, her online list, is in),
    // and waits for the room's position.
    await waitFor(async () => (await redisCli('SISMEMBER', key, 'ann')).trim() === '1', 5000, 50, 'ann online');
    const bob = connect(srv, room, { sub: 'bob', name: 'Bob' });
    t.after(() => bob.terminate());
    await waitFor(async () => (await redisCli('SISMEMBER', key, 'bob')).trim() === '1', 5000, 50, 'bob online');
    const stillHeld = await psql(`SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
          WHERE c.relname = 'rooms' AND l.mode = 'AccessExclusiveLock' AND l.granted`);
    assert.equal(Number(stillHeld), 1, 'the lock went before both joined: nothing raced the welcome');

    await released;
    const welcome = await ann.next('welcome', 10000);
    const listed = welcome.online.map((u) => u.id);
    // Ann's list was taken with her join, before Bob connected.
    assert.ok(!listed.includes('bob'), `bob in ann's welcome: ${JSON.stringify(welcome.online)}`);
    const join = await ann.next((ev) => ev.type === 'join' && ev.user?.id === 'bob', 3000);
    assert.equal(join.room, room);
    t.diagnostic(`welcome listed ${JSON.stringify(listed)}; bob's join came after it`);
});
