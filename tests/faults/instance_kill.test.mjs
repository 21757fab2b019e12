// kill -9 of a whole instance (master and workers: its process group) under
// load, presence_ttl_s = 3. The surviving instance's janitor reaps the dead
// one's presence records (its users leave, and `leave` is broadcast),
// and the dead instance's clients reconnect to the survivor with since and
// miss nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chatctlFor, openWs, redisCli, sleep, startChatd, waitFor } from '../lib/harness.mjs';
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

test('kill -9 of the only instance: chatctl online reaps its users itself', async (t) => {
    // Nobody is left to reap: the sets keep the dead instance's users
    // until a chatd starts again. The admin tool does not take them for
    // online meanwhile.
    const srv = await startChatd({ t, workers: 2, env: { CHAT_PRESENCE_TTL_S: 2 } });
    const room = `lone-${rnd()}`;
    const c = await openWs(srv.wsUrl(`/api/chat?room=${room}`), { token: srv.token({ sub: 'lou', name: 'Lou' }) });
    await waitFor(async () => (await redisCli('SMEMBERS', `${srv.prefix}online`)).includes('lou'), 5000, 50, 'lou online');
    srv.killAll('SIGKILL');
    await srv.waitExit(5000);
    await c.closed;
    // Past the heartbeat's life (0.6 of presence_ttl_s): dead, not reaped.
    await sleep(2000);
    assert.ok((await redisCli('SMEMBERS', `${srv.prefix}online`)).includes('lou'), 'nobody reaped lou yet');
    for (const args of [['online'], ['online', room]]) {
        const r = await chatctlFor(srv, args);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, '', `${args.join(' ')} lists nobody`);
    }
    assert.equal(await redisCli('SMEMBERS', `${srv.prefix}online`), '');
    assert.equal(await redisCli('SMEMBERS', `${srv.prefix}online:${room}`), '');
});
