// A client that pipelines far more requests than are answered while Redis
// is stalled (stopped, not down: commands queue unanswered until the link's
// watchdog gives up after 3 s), then goes away. Each request used to hold
// a reference to the connection, in a 16-bit count: 70,000 of them wrapped
// it, and the connection was freed while requests still pointed to it.
// Now a connection has at most 64 requests awaiting replies and the rest
// of its frames wait unread. The worker must survive, the stall must be
// survived by the connections that stay, and everything must work once
// Redis answers again.
//
// Also: an upgrade dropped while Redis holds its ban verdict.
//
// Serial: this stops the shared test Redis (SIGSTOP) and always resumes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import {
    httpGet, metricCounter, mintToken, NO_RATE, openWs, redisCli, sleep, startChatd, waitFor,
} from '../../lib/harness.mjs';

const REPLY_MS = 20000;

test('70,000 requests pipelined into a stalled Redis, then a close: the worker lives and serves', async (t) => {
    const srv = await startChatd({ t, workers: 1, env: NO_RATE });
    const room = `stall-${Date.now()}`;
    const url = srv.wsUrl(`/api/chat?room=${room}`);
    const flooder = await openWs(url, { token: mintToken(srv.secret, { sub: 'flooder' }) });
    const bystander = await openWs(url, { token: mintToken(srv.secret, { sub: 'bystander' }) });
    const workers = srv.children().sort();
    const redisPid = Number(/process_id:(\d+)/.exec(await redisCli('INFO', 'server'))[1]);
    const before = await metricCounter(srv, 'chatd_websocket_reads_paused_total');

    process.kill(redisPid, 'SIGSTOP');
    try {
        const frame = JSON.stringify({ type: 'message', text: 'x' });
        for (let i = 0; i < 70000; i++) flooder.ws.send(frame);
        // Let the frames reach the worker, then leave without reading.
        await new Promise((resolve) => flooder.ws._socket.write('', resolve));
        await sleep(500);
        flooder.terminate();
        // The link's watchdog (3 s without an answer) answers everything
        // that waited on it with an error.
        await sleep(4000);
    } finally {
        process.kill(redisPid, 'SIGCONT');
    }
    assert.ok((await metricCounter(srv, 'chatd_websocket_reads_paused_total')) > before, 'the flooder was paused');

    // The worker is the same process, and serves: the bystander's message
    // is acked and broadcast once Redis is back.
    await waitFor(async () => (await httpGet(srv.port, '/readyz')).status === 200, 15000, 100, 'ready again');
    const ref = `after-${Date.now()}`;
    let ack;
    for (let i = 0; i < 50 && !ack; i++) {
        const r = `${ref}-${i}`;
        await bystander.send({ type: 'message', text: 'still here', ref: r });
        const reply = await bystander.next((e) => (e.type === 'ack' || e.type === 'error') && e.ref === r, REPLY_MS);
        if (reply.type === 'ack') ack = reply;
        else await sleep(200); // unavailable while the links come back
    }
    assert.ok(ack, 'a message is acked after the stall');
    await bystander.next((e) => e.type === 'message' && e.id === ack.id, REPLY_MS);
    assert.equal(bystander.readyState, 1);
    assert.deepEqual(srv.children().sort(), workers, 'the worker was not replaced');
    assert.doesNotMatch(srv.logs(), /worker died|AddressSanitizer|runtime error/);
    await bystander.close();
});

test('an upgrade dropped while its ban verdict is pending: no leave for a join never counted', async (t) => {
    // A banned user (banned by hand: no kick) keeps an open tab. Another
    // upgrade of theirs reaches the same worker while Redis is stalled,
    // and the client drops it before the verdict. The join comes back
    // "banned" (nothing counted); a leave sent for the dropped connection
    // would take the open tab's count to zero and announce it gone.
    const srv = await startChatd({ t, workers: 1 });
    const room = `verdict-${Date.now()}`;
    const url = srv.wsUrl(`/api/chat?room=${room}`);
    const token = mintToken(srv.secret, { sub: 'mallory' });
    const tab = await openWs(url, { token });
    const watcher = await openWs(url, { token: mintToken(srv.secret, { sub: 'watcher' }) });
    await redisCli('SADD', `${srv.prefix}banned`, 'mallory');
    const redisPid = Number(/process_id:(\d+)/.exec(await redisCli('INFO', 'server'))[1]);
    try {
        process.kill(redisPid, 'SIGSTOP');
        try {
            const sock = net.connect({ host: '127.0.0.1', port: srv.port });
            await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
            sock.write(`GET /api/chat?room=${room} HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\n` +
                'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
                `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n` +
                `Authorization: Bearer ${token}\r\n\r\n`);
            // Well inside the link's 3 s watchdog: the verdict is only late.
            await sleep(400);
            sock.destroy();
            await sleep(400);
        } finally {
            process.kill(redisPid, 'SIGCONT');
        }
        // A message from the tab after the verdict: a leave caused by the
        // dropped upgrade would have reached the watcher before it.
        const ref = `m-${Date.now()}`;
        await tab.send({ type: 'message', text: 'still here', ref });
        await tab.next((e) => e.type === 'ack' && e.ref === ref, REPLY_MS);
        await watcher.next((e) => e.type === 'message' && e.text === 'still here', REPLY_MS);
        const about = watcher.received.filter((e) => (e.type === 'join' || e.type === 'leave') && e.user?.id === 'mallory');
        assert.deepEqual(about, [], 'no join or leave for the dropped upgrade');
        assert.equal(await redisCli('HGET', `${srv.prefix}room_users:${room}`, 'mallory'), '1');
        assert.equal(await redisCli('SISMEMBER', `${srv.prefix}online:${room}`, 'mallory'), '1');
    } finally {
        await redisCli('SREM', `${srv.prefix}banned`, 'mallory');
        await tab.close();
        await watcher.close();
    }
});
