// Redis stopped for 5 s and started again (empty) in the middle of mixed
// traffic from 32 clients on two instances. Sends during the outage get
// `unavailable` (or succeed), never a silent loss; the workers reconnect,
// resubscribe and read what they missed from PostgreSQL; presence is put
// back (the online sets hold the connected users again).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisCli, services, sleep, waitFor } from '../lib/harness.mjs';
import { controlReady, finalCheck, openClients, rnd, runTraffic, startPair, stopServers } from './traffic.mjs';

test('redis outage of 5 s under traffic: nothing acked is lost, presence comes back', async (t) => {
    const [a, b] = await startPair(t);
    const rooms = [`ro-${rnd()}`, `ro-${rnd()}`];
    const clients = await openClients(t, rooms, 16, [a, b], a.secret);
    const traffic = runTraffic(clients, { periodMs: 250, visitors: 4, rooms, servers: [a, b], secret: a.secret });
    let restarted = false;
    try {
        await sleep(3000);
        await services('stop-redis');
        await sleep(5000);
        await services('start-redis');
        restarted = true;
        // Every worker is back on the control channel of the new Redis.
        await controlReady(a.prefix, 4, 20000);
        await sleep(3000);
    } finally {
        await traffic.stop();
        if (!restarted) await services('start-redis');
    }
    const unavailable = clients.reduce((n, c) => n + (c.refusals.unavailable ?? 0), 0);
    t.diagnostic(`${traffic.stats.steps} steps, ${traffic.stats.visits} visits (${traffic.stats.visitFailures} refused), ${unavailable} unavailable`);
    assert.ok(unavailable > 0, 'no send was refused while Redis was down');
    await finalCheck(t, { prefix: a.prefix, clients, rooms });
    // The whole online set is rebuilt too (visitors gone, clients there).
    const online = (await redisCli('SMEMBERS', `${a.prefix}online`)).split('\n').filter(Boolean).sort();
    assert.deepEqual(online, clients.map((c) => c.user).sort());
    await Promise.all(clients.map((c) => c.stop()));
    await waitFor(async () => (await redisCli('SCARD', `${a.prefix}online`)) === '0', 10000, 100, 'everybody offline');
    await stopServers([a, b]);
});
