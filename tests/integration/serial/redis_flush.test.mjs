// SCRIPT FLUSH while a client pipelines messages (docs/redis.md, "Scripts").
// Every request's rate check is a Lua script run by its SHA-1; a flush
// makes the calls in flight meet NOSCRIPT. They are sent again, and the
// calls made meanwhile wait for them, so a connection's messages are still
// stored, acked and delivered in the order they were sent, and none is
// refused.
//
// Serial: this flushes the shared test Redis's script cache, which every
// other running server would have to recover from as well.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mintToken, NO_RATE, openWs, redisCli, sleep, startChatd, waitFor } from '../../lib/harness.mjs';

const MESSAGES = 1200;

test('SCRIPT FLUSH under a pipelined burst: every message acked, in the order sent', async (t) => {
    const srv = await startChatd({ t, workers: 1, env: NO_RATE });
    const room = `flush-${Date.now()}`;
    const url = srv.wsUrl(`/api/chat?room=${room}`);
    const sender = await openWs(url, { token: mintToken(srv.secret, { sub: 'sender' }) });
    const watcher = await openWs(url, { token: mintToken(srv.secret, { sub: 'watcher' }) });

    let flushes = 0;
    let sending = true;
    const flusher = (async () => {
        while (sending) {
            await redisCli('SCRIPT', 'FLUSH');
            flushes++;
            await sleep(3);
        }
    })();
    try {
        for (let i = 0; i < MESSAGES; i++) {
            sender.ws.send(JSON.stringify({ type: 'message', text: `m${i}`, ref: `r${i}` }));
            if (i % 40 === 39) await sleep(2);
        }
        const replies = () => sender.received.filter((e) => e.type === 'ack' || e.type === 'error');
        await waitFor(() => replies().length >= MESSAGES, 30000, 20, `${MESSAGES} replies`)
            .catch((e) => assert.fail(`${e.message}: got ${replies().length}`));
    } finally {
        sending = false;
        await flusher;
    }
    const replies = sender.received.filter((e) => e.type === 'ack' || e.type === 'error');
    const errors = replies.filter((e) => e.type === 'error');
    assert.deepEqual(errors.slice(0, 3), [], `${errors.length} requests refused`);
    t.diagnostic(`${MESSAGES} messages, ${flushes} flushes during the burst`);
    assert.ok(flushes >= 3, `only ${flushes} flushes happened during the burst`);

    // Replies come in the order of the requests' rate verdicts; stored seq
    // is the order of their commits. Both must be the order sent.
    assert.deepEqual(replies.map((e) => e.ref), Array.from({ length: MESSAGES }, (_, i) => `r${i}`),
        'acks in the order sent');
    const seqs = replies.map((e) => e.seq);
    for (let i = 1; i < seqs.length; i++) {
        assert.ok(seqs[i] > seqs[i - 1], `r${i} stored at seq ${seqs[i]}, after r${i - 1} at ${seqs[i - 1]}`);
    }
    const texts = () => watcher.received.filter((e) => e.type === 'message').map((e) => e.text);
    await waitFor(() => texts().length >= MESSAGES, 15000, 20, 'every message delivered');
    assert.deepEqual(texts(), Array.from({ length: MESSAGES }, (_, i) => `m${i}`), 'delivered in the order sent');
});
