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
// Serial: this stops the shared test Redis (SIGSTOP) and always resumes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
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
