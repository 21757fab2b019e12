// PostgreSQL stopped and started again in the middle of mixed traffic from
// 32 clients on two instances: writes get `unavailable` while it is down,
// nothing is half stored (room_events contiguous, every messages row with
// its room_events row), and the same chatd processes recover by
// themselves (no restart: the workers' pids are unchanged).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { env, expectHttpError, httpGet, openWs, services, sleep, startChatd, waitFor } from '../lib/harness.mjs';
import { finalCheck, openClients, rnd, runTraffic, startPair, stopServers } from './traffic.mjs';

test('postgresql outage under traffic: unavailable, nothing half stored, recovery in place', async (t) => {
    const [a, b] = await startPair(t);
    const pids = [...a.children(), ...b.children()].sort();
    const rooms = [`po-${rnd()}`, `po-${rnd()}`];
    const clients = await openClients(t, rooms, 16, [a, b], a.secret);
    const traffic = runTraffic(clients, { periodMs: 250, visitors: 4, rooms, servers: [a, b], secret: a.secret });
    let started = false;
    try {
        await sleep(3000);
        await services('stop-pg');
        // Bounded: some client hears `unavailable` while it is down.
        await waitFor(() => clients.some((c) => c.refusals.unavailable), 20000, 50, 'a send refused with unavailable');
        await sleep(3000);
        await services('start-pg');
        started = true;
        // Recovery: acks flow again (the pools reconnect with backoff).
        const before = clients.reduce((n, c) => n + c.acked.size, 0);
        await waitFor(() => clients.reduce((n, c) => n + c.acked.size, 0) > before + 50, 30000, 100,
            'acks flowing again after postgresql came back');
        await sleep(2000);
    } finally {
        await traffic.stop();
        if (!started) await services('start-pg');
    }
    const unavailable = clients.reduce((n, c) => n + (c.refusals.unavailable ?? 0), 0);
    t.diagnostic(`${traffic.stats.steps} steps, ${traffic.stats.visits} visits (${traffic.stats.visitFailures} refused), ${unavailable} unavailable`);
    await finalCheck(t, { prefix: a.prefix, clients, rooms });
    assert.deepEqual([...a.children(), ...b.children()].sort(), pids, 'workers were restarted');
    assert.ok(!/worker died/.test(a.logs() + b.logs()), 'a worker died');
    await Promise.all(clients.map((c) => c.stop()));
    await stopServers([a, b]);
});

test('postgresql down: an upgrade that needs it is refused with 503, one that does not still opens', async (t) => {
    const srv = await startChatd({ t, workers: 1 });
    const token = srv.token({ sub: 'pia' });
    const known = `pk-${rnd()}`;
    const url = (room, q = '') => srv.wsUrl(`/api/chat?room=${room}${q}`);
    const first = await openWs(url(known), { token });
    t.after(() => first.close());
    let started = false;
    try {
        await services('stop-pg');
        await waitFor(async () => (await httpGet(srv.port, '/readyz')).status === 503, 20000, 100,
            'the pool noticed postgresql is down');
        // A room this worker does not follow: its welcome would need last_seq.
        const fresh = await expectHttpError(url(`pf-${rnd()}`), { Authorization: `Bearer ${token}` });
        assert.equal(fresh.status, 503, fresh.body);
        assert.equal(fresh.json?.error?.code, 'unavailable');
        // Catching up reads PostgreSQL, even in a followed room.
        const replay = await expectHttpError(url(known, '&since=0'), { Authorization: `Bearer ${token}` });
        assert.equal(replay.status, 503, replay.body);
        assert.equal(replay.json?.error?.code, 'unavailable');
        // A followed room needs nothing from it to welcome.
        const again = await openWs(url(known), { token });
        assert.equal(again.welcome.last_seq, first.welcome.last_seq);
        again.close();
    } finally {
        if (!started) await services('start-pg');
        started = true;
    }
    await waitFor(async () => (await httpGet(srv.port, '/readyz')).status === 200, 30000, 100, 'ready again');
    const later = await openWs(url(`pf-${rnd()}`), { token });
    assert.equal(later.welcome.last_seq, 0);
    later.close();
});

test('a connection whose set-up PostgreSQL refuses is retried with a growing back-off', async (t) => {
    // Connecting works, preparing the statements does not (their functions
    // are not on this search path, as in a database never migrated). The
    // back-off was forgiven at each connect, before the set-up had failed:
    // a worker then asked again every 100 ms, for ever.
    const dsn = `${env.pgTestDsn}${env.pgTestDsn.includes('?') ? '&' : '?'}options=-c%20search_path%3Dnowhere_${rnd()}`;
    const srv = await startChatd({ t, workers: 1, env: { CHAT_PG_DSN: dsn, CHAT_PG_POOL_SIZE: 1 } });
    await waitFor(() => /set-up statement \d+ failed/.test(srv.logs()), 10000, 50, 'a set-up to fail');
    await sleep(4000);
    const failed = (srv.logs().match(/set-up statement \d+ failed/g) ?? []).length;
    // 100, 200, 400, 800, 1600 ms, then 3 s apart: six or so in these 4 s, where there were 40.
    assert.ok(failed <= 9, `${failed} set-ups failed in about 4 s`);
    assert.equal((await httpGet(srv.port, '/readyz')).status, 503);
    assert.equal((await httpGet(srv.port, '/healthz')).status, 200);
});

