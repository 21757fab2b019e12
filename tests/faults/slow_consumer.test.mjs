// Slow consumers under traffic: clients that stop reading (their socket
// paused) are closed with 1013 once their unsent output passes
// max_outbuf_bytes (64 KiB here), while every other client keeps receiving
// everything: their delivery stays complete, id by id (counts, not
// latency).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sleep, waitFor } from '../lib/harness.mjs';
import { finalCheck, metrics, openClients, rnd, runTraffic, startPair, stopServers } from './traffic.mjs';

const SLOW_CLOSES = 'chatd_slow_consumer_closes_total';

test('slow consumers are closed with 1013; everybody else gets everything', async (t) => {
    const [a, b] = await startPair(t, { env: { CHAT_MAX_OUTBUF_BYTES: 65536, CHAT_MAX_TEXT_CHARS: 12000 } });
    const rooms = [`sc-${rnd()}`, `sc-${rnd()}`];
    const clients = await openClients(t, rooms, 12, [a, b], a.secret);
    // Big messages, so that the slow ones' buffers fill in seconds.
    const bulk = await openClients(t, rooms, 3, [a, b], a.secret, { textSize: 11500 });
    const slow = await openClients(t, rooms, 3, [a, b], a.secret, { reconnect: false });
    const everyone = [...clients, ...bulk];
    const traffic = runTraffic(clients, { periodMs: 250, visitors: 2, rooms, servers: [a, b], secret: a.secret });
    const heavy = runTraffic(bulk, { periodMs: 40 });
    const slowCloses = async () => (await metrics(a))[SLOW_CLOSES] + (await metrics(b))[SLOW_CLOSES];
    try {
        await sleep(1000);
        for (const c of slow) c.ws._socket.pause();
        const pausedAt = Date.now();
        const got = slow.map((c) => c.changeSeqs.length);
        // Bounded: the server gives up on every one of them. They are read
        // again at once, so that they see the close frame queued behind
        // what they did not read (the server waits 5 s for them).
        await waitFor(async () => (await slowCloses()) >= slow.length, 60000, 20, 'every slow consumer closed');
        for (const c of slow) c.ws?._socket.resume();
        t.diagnostic(`slow consumers closed within ${Date.now() - pausedAt} ms of their pause`);
        await Promise.all(slow.map((c) => c.until(() => !c.live, 10000, 'closed')));
        for (const c of slow) {
            assert.deepEqual(c.closes.map((x) => x.code), [1013], `${c.label}: ${c.describe()}`);
            assert.ok(c.changeSeqs.length > got[slow.indexOf(c)], `${c.label} read nothing after resuming`);
        }
        await sleep(1000);
    } finally {
        await heavy.stop();
        await traffic.stop();
    }
    t.diagnostic(`${traffic.stats.steps + heavy.stats.steps} steps; slow closes ${await slowCloses()}`);
    // Nobody else was closed.
    for (const c of everyone) assert.deepEqual(c.closes, [], `${c.label} was closed`);
    await finalCheck(t, { prefix: a.prefix, clients: [...everyone, ...slow], rooms, exact: everyone });
    await Promise.all(everyone.map((c) => c.stop()));
    await stopServers([a, b]);
});
