// SIGTERM to one instance under load (drain_timeout_s = 5): every one of
// its clients gets close 1001, its master exits 0 within the drain time,
// and nothing acked is lost: the clients move to the other instance with
// since, resend what was not acked (same ref), and miss nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../lib/harness.mjs';
import { finalCheck, openClients, rnd, runTraffic, startPair, stopServers } from './traffic.mjs';

const DRAIN_S = 5;

test('SIGTERM under load: close 1001 to all, exit 0 within the drain time, nothing lost', async (t) => {
    const [a, b] = await startPair(t, { env: { CHAT_DRAIN_TIMEOUT_S: DRAIN_S } });
    const rooms = [`st-${rnd()}`, `st-${rnd()}`];
    const clients = await openClients(t, rooms, 16, [a, b], a.secret);
    const onA = clients.filter((c) => c.server === a);
    const traffic = runTraffic(clients, { periodMs: 200, visitors: 4, rooms, servers: [a, b], secret: a.secret });
    let exit;
    try {
        await sleep(3000);
        a.kill('SIGTERM');
        // Bounded by the drain time (and a little for the exit itself).
        exit = await a.waitExit((DRAIN_S + 2) * 1000);
        await sleep(2000);
    } finally {
        await traffic.stop();
    }
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.match(a.logs(), /all workers stopped; master exits/);
    for (const c of onA) {
        assert.equal(c.closes[0]?.code, 1001, `${c.label}: ${c.describe()}`);
        assert.equal(c.server, b, `${c.label} did not move to B: ${c.describe()}`);
    }
    const onB = clients.filter((c) => !onA.includes(c));
    for (const c of onB) assert.deepEqual(c.closes, [], `${c.label} on B was closed`);
    t.diagnostic(`${onA.length} clients moved from A to B; ${traffic.stats.steps} steps`);
    await finalCheck(t, { prefix: a.prefix, clients, rooms, exact: onB });
    await Promise.all(clients.map((c) => c.stop()));
    await stopServers([a, b]);
});
