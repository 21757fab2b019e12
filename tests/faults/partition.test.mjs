// A network partition between one instance and Redis, under traffic. A
// TCP proxy (node:net) sits between instance A and Redis; B talks to Redis
// directly. Twice, the proxy stops forwarding in both directions without
// closing anything, for 5 s: the first time it then forwards again what it
// held, the second time it destroys every connection instead.
//
// Expected: A's command link watchdog drops the stalled link after 3 s of
// unanswered commands (logged) and reconnects; A's sends meanwhile are
// refused with `unavailable` (or succeed), never silently lost; A's
// clients still get every change (the hub reads what it missed from
// PostgreSQL); B's janitor reaps A's presence while A cannot beat, and A
// puts it back when it is through again: afterwards the online sets hold
// exactly the connected users.
//
// Then a connection lost without a trace (the Redis host gone, no FIN or
// RST ever arrives; the proxy closes its Redis side and never answers the
// chatd side again): the command link's watchdog notices, and so must the
// subscription link, which sends nothing of its own: its liveness probe
// goes unanswered. Afterwards A's workers are subscribed again (control
// commands such as kicks reach A's clients) and nothing was lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { env, redisCli, sleep, waitFor } from '../lib/harness.mjs';
import { controlReady, finalCheck, openClients, rnd, runTraffic, startPair, startProxy, stopServers } from './traffic.mjs';

test('redis partition of one instance (held, then cut): detected, survived, nothing lost', async (t) => {
    const proxy = await startProxy(Number(env.redisPort));
    t.after(() => proxy.close());
    const [a, b] = await startPair(t, { envA: { CHAT_REDIS_URL: `redis://127.0.0.1:${proxy.port}/0` } });
    const rooms = [`pt-${rnd()}`, `pt-${rnd()}`];
    const clients = await openClients(t, rooms, 16, [a, b], a.secret);
    const traffic = runTraffic(clients, { periodMs: 250, visitors: 4, rooms, servers: [a, b], secret: a.secret });
    const stalls = () => (a.logs().match(/redis link commands stalled/g) ?? []).length;
    try {
        for (const heal of ['resume', 'cut']) {
            await sleep(2500);
            const before = stalls();
            proxy.pause();
            // Bounded: the watchdog notices (3 s without an answer).
            await waitFor(() => stalls() > before, 10000, 100, 'the stalled command link dropped');
            await sleep(2000);
            if (heal === 'cut') proxy.cut();
            proxy.resume();
            await controlReady(a.prefix, 4, 15000);
        }
        await sleep(3000);
    } finally {
        proxy.resume();
        await traffic.stop();
    }
    const unavailable = clients.reduce((n, c) => n + (c.refusals.unavailable ?? 0), 0);
    t.diagnostic(`${stalls()} stalls logged; ${traffic.stats.steps} steps, ${unavailable} unavailable`);
    assert.ok(unavailable > 0, "no send on A was refused during A's partition");
    assert.ok(!/worker died/.test(a.logs() + b.logs()), 'a worker died');
    await finalCheck(t, { prefix: a.prefix, clients, rooms });
    const online = (await redisCli('SMEMBERS', `${a.prefix}online`)).split('\n').filter(Boolean).sort();
    assert.deepEqual(online, clients.map((c) => c.user).sort());
    await Promise.all(clients.map((c) => c.stop()));
    await stopServers([a, b]);
});

test('redis connections lost without a trace: both links of the instance notice and come back', async (t) => {
    const proxy = await startProxy(Number(env.redisPort));
    t.after(() => proxy.close());
    const [a, b] = await startPair(t, { envA: { CHAT_REDIS_URL: `redis://127.0.0.1:${proxy.port}/0` } });
    const rooms = [`bh-${rnd()}`, `bh-${rnd()}`];
    const clients = await openClients(t, rooms, 8, [a, b], a.secret);
    const traffic = runTraffic(clients, { periodMs: 250, rooms, servers: [a, b], secret: a.secret });
    try {
        await sleep(1500);
        proxy.blackhole();
        // Redis saw A's connections close; A must subscribe again by itself.
        await waitFor(async () => {
            const out = (await redisCli('PUBSUB', 'NUMSUB', `${a.prefix}control`)).split('\n');
            return Number(out[1]) === 2;
        }, 5000, 50, "Redis dropped A's subscriptions");
        await controlReady(a.prefix, 4, 20000);
        await sleep(1500);
    } finally {
        await traffic.stop();
    }
    assert.match(a.logs(), /redis link subscribe (stalled|lost)/);
    // A control command reaches A's clients again.
    const victim = clients.find((c) => c.server === a);
    victim.reconnect = false;
    await redisCli('PUBLISH', `${a.prefix}control`, JSON.stringify({ op: 'kick', user: victim.user }));
    await victim.until(() => !victim.live, 5000, 'kicked');
    assert.equal(victim.closes.at(-1).code, 4003);
    await finalCheck(t, { prefix: a.prefix, clients, rooms });
    await Promise.all(clients.map((c) => c.stop()));
    await stopServers([a, b]);
});
