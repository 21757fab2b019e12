// kill -9 of a worker under load: the master starts a new one for the slot,
// the dead one's clients reconnect with since (and resend what was not
// acked, same ref) and miss nothing, and presence is clean afterwards: the
// new worker reaps the dead one's records, so nobody is online without a
// connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisCli, sleep, waitFor } from '../lib/harness.mjs';
import { finalCheck, openClients, rnd, runTraffic, startPair, stopServers } from './traffic.mjs';

test('kill -9 of a worker under load: respawned, its clients catch up, presence clean', async (t) => {
    const [a, b] = await startPair(t);
    const rooms = [`wk-${rnd()}`, `wk-${rnd()}`];
    const clients = await openClients(t, rooms, 16, [a, b], a.secret);
    // Listeners that do not come back when their connection dies: those
    // on the killed worker would stay online for ever if nobody reaped
    // the dead worker's records.
    const quitters = await openClients(t, rooms, 3, [a], a.secret, { reconnect: false });
    const traffic = runTraffic(clients, { periodMs: 250, visitors: 4, rooms, servers: [a, b], secret: a.secret });
    const before = a.children().sort();
    let victim;
    try {
        await sleep(3000);
        victim = before[Math.floor(Math.random() * before.length)];
        process.kill(victim, 'SIGKILL');
        await waitFor(() => {
            const now = a.children();
            return now.length === 2 && !now.includes(victim);
        }, 10000, 50, 'the killed worker replaced');
        await sleep(3000);
    } finally {
        await traffic.stop();
    }
    assert.match(a.logs(), new RegExp(`worker died slot=\\d pid=${victim} signal=KILL`));
    const dropped = [...clients, ...quitters].filter((c) => c.closes.some((x) => x.code === 1006));
    t.diagnostic(`${dropped.length} clients were on the killed worker; ${traffic.stats.steps} steps`);
    assert.ok(dropped.length > 0, 'no client was on the killed worker');
    // Quitters that were on the killed worker stay gone; the rest leave now.
    for (const q of quitters) q.stopped = true;
    await Promise.all(quitters.map((q) => q.stop()));
    await finalCheck(t, { prefix: a.prefix, clients: [...clients, ...quitters], rooms });
    // Nobody is online without a connection.
    const online = (await redisCli('SMEMBERS', `${a.prefix}online`)).split('\n').filter(Boolean).sort();
    assert.deepEqual(online, clients.map((c) => c.user).sort());
    await Promise.all(clients.map((c) => c.stop()));
    await stopServers([a, b], { deaths: 1 });
});
