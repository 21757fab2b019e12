// kill -9 of a whole instance (master and workers: its process group) under
// load, presence_ttl_s = 3. The surviving instance's janitor reaps the dead
// one's presence records (its users leave, and `leave` is broadcast),
// and the dead instance's clients reconnect to the survivor with since and
// miss nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisCli, sleep, waitFor } from '../lib/harness.mjs';
import { finalCheck, openClients, rnd, runTraffic, startPair, stopServers } from './traffic.mjs';

test('kill -9 of a whole instance: the other reaps its users, its clients move over', async (t) => {
    const [a, b] = await startPair(t);
    const rooms = [`ik-${rnd()}`, `ik-${rnd()}`];
    const clients = await openClients(t, rooms, 16, [a, b], a.secret);
    // Listeners on A that never come back: only the janitor can clear them.
    const quitters = await openClients(t, rooms, 3, [a], a.secret, { reconnect: false });
    const onA = clients.filter((c) => c.server === a);
    const traffic = runTraffic(clients, { periodMs: 250, visitors: 4, rooms, servers: [a, b], secret: a.secret });
    try {
        await sleep(3000);
        a.killAll('SIGKILL');
        const killedAt = Date.now();
        await a.waitExit(5000);
        // Bounded (ttl 3 s: reaped within 0.85 of it, in practice): the
        // quitters leave the online sets, and B's clients hear it.
        await waitFor(async () => {
            const online = (await redisCli('SMEMBERS', `${a.prefix}online`)).split('\n');
            return quitters.every((q) => !online.includes(q.user));
        }, 15000, 100, "the dead instance's users reaped");
        t.diagnostic(`the dead instance's users were gone ${Date.now() - killedAt} ms after the kill (presence_ttl_s 3)`);
        await sleep(2000);
    } finally {
        await traffic.stop();
    }
    assert.equal(a.exitInfo.signal, 'SIGKILL');
    for (const c of onA) assert.ok(c.reconnects >= 1 && c.server === b, `${c.label} did not move to B: ${c.describe()}`);
    const onB = clients.filter((c) => !onA.includes(c) && c.closes.length === 0);
    for (const q of quitters) {
        for (const c of onB.filter((x) => x.room === q.room)) {
            // Every leave reached everyone on B (counted: one per quitter at least).
            assert.ok(c.counts.leave >= quitters.filter((x) => x.room === c.room).length, `${c.label} heard ${c.counts.leave} leaves`);
        }
    }
    for (const q of quitters) q.stopped = true;
    t.diagnostic(`${onA.length} clients moved from A to B; ${traffic.stats.steps} steps`);
    await finalCheck(t, { prefix: a.prefix, clients: [...clients, ...quitters], rooms, exact: onB });
    const online = (await redisCli('SMEMBERS', `${a.prefix}online`)).split('\n').filter(Boolean).sort();
    assert.deepEqual(online, clients.map((c) => c.user).sort());
    await Promise.all(clients.map((c) => c.stop()));
    await stopServers([a, b]);
});
