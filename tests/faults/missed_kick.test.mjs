// A kick published while a worker's links to Redis are down never reaches
// it: pub/sub keeps nothing. The ban set does, and `chatctl ban` is a ban
// and a kick: so when the links come back the worker looks its users up in
// the ban set, and a banned user connected meanwhile is kicked (4003) all
// the same, while the others stay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { env, mintToken, openWs, redisCli, sleep, startChatd, waitFor } from '../lib/harness.mjs';
import { BASE_ENV, controlReady, startProxy } from './traffic.mjs';

test('a ban whose kick was lost while Redis was cut off still closes the banned user', async (t) => {
    const proxy = await startProxy(Number(env.redisPort));
    t.after(() => proxy.close());
    const prefix = `mk${crypto.randomBytes(4).toString('hex')}:`;
    const srv = await startChatd({
        t, prefix, workers: 1, env: { ...BASE_ENV, CHAT_REDIS_URL: `redis://127.0.0.1:${proxy.port}/0` },
    });
    await controlReady(prefix, 1);
    const room = `mk-${crypto.randomBytes(4).toString('hex')}`;
    const open = (sub) => openWs(srv.wsUrl(`/api/chat?room=${room}`),
        { token: mintToken(srv.secret, { sub, role: 'member' }) });
    const eve = await open('eve');
    const bob = await open('bob');

    // Held, then cut: what Redis sends meanwhile never arrives.
    proxy.pause();
    await sleep(200);
    await redisCli('SADD', `${prefix}banned`, 'eve');
    const receivers = Number(await redisCli('PUBLISH', `${prefix}control`, JSON.stringify({ op: 'kick', user: 'eve' })));
    assert.equal(receivers, 1, 'the worker was still subscribed: the kick went to the held link');
    await sleep(200);
    proxy.cut();
    proxy.resume();

    const closed = await eve.waitClose(20000);
    assert.equal(closed.code, 4003, `eve is kicked once the links are back (${JSON.stringify(closed)})`);
    await waitFor(() => /a banned user was still connected \(a kick was missed\)/.test(srv.logs()), 5000, 50,
        'the sweep logged');
    // Bob was not banned: still served.
    assert.equal(bob.closeInfo, null, `bob is still connected (${JSON.stringify(bob.closeInfo)})`);
    await bob.send({ type: 'message', text: 'still here', ref: 'b1' });
    const ack = await bob.next((m) => m.type === 'ack' || m.type === 'error', 10000);
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    assert.equal(bob.closeInfo, null, 'bob is still connected');
    await bob.close();
    await waitFor(async () => (await redisCli('SISMEMBER', `${prefix}online:${room}`, 'eve')) === '0', 10000, 100,
        'eve gone from the online set');
});
