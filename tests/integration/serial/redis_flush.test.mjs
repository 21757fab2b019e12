// SCRIPT FLUSH while clients pipeline messages (docs/redis.md, "Scripts").
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

const SENDERS = 3;
const MESSAGES = 500; // each

test('SCRIPT FLUSH under pipelined bursts: every message acked, in the order sent', async (t) => {
    // Two workers: one's resent body can load the script again while the
    // other's calls are still in flight, so some run ahead of their turn.
    const srv = await startChatd({ t, workers: 2, env: NO_RATE });
    const room = `flush-${Date.now()}`;
    const url = srv.wsUrl(`/api/chat?room=${room}`);
    const workerOf = (c) => c.welcome.conn_id.split('-').slice(0, 3).join('-');
    const senders = [];
    for (let k = 0; k < SENDERS; k++) {
        const token = mintToken(srv.secret, { sub: `sender${k}` });
        let c = await openWs(url, { token });
        // The second sender on the other worker than the first.
        for (let tries = 0; k === 1 && workerOf(c) === workerOf(senders[0]); tries++) {
            assert.ok(tries < 40, 'no connection landed on the second worker');
            await c.close();
            c = await openWs(url, { token });
        }
        senders.push(c);
    }
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
    const repliesOf = (c) => c.received.filter((e) => e.type === 'ack' || e.type === 'error');
    try {
        for (let i = 0; i < MESSAGES; i++) {
            senders.forEach((c, k) => c.ws.send(JSON.stringify({ type: 'message', text: `s${k} m${i}`, ref: `r${i}` })));
            if (i % 20 === 19) await sleep(2);
        }
        await waitFor(() => senders.every((c) => repliesOf(c).length >= MESSAGES), 30000, 20, 'every reply')
            .catch((e) => assert.fail(`${e.message}: got ${senders.map((c) => repliesOf(c).length)}`));
    } finally {
        sending = false;
        await flusher;
    }
    t.diagnostic(`${SENDERS} x ${MESSAGES} messages, ${flushes} flushes during the bursts`);
    assert.ok(flushes >= 3, `only ${flushes} flushes happened during the bursts`);
    const inOrder = Array.from({ length: MESSAGES }, (_, i) => `r${i}`);
    const seqs = new Set();
    senders.forEach((c, k) => {
        const replies = repliesOf(c);
        const errors = replies.filter((e) => e.type === 'error');
        assert.deepEqual(errors.slice(0, 3), [], `sender${k}: ${errors.length} requests refused`);
        // Replies come in the order of the requests' rate verdicts, and a
        // message's seq is the order of its commit: both must be the order
        // its connection sent them in.
        assert.deepEqual(replies.map((e) => e.ref), inOrder, `sender${k}: acks in the order sent`);
        for (let i = 1; i < replies.length; i++) {
            assert.ok(replies[i].seq > replies[i - 1].seq,
                `sender${k}: r${i} stored at seq ${replies[i].seq}, after r${i - 1} at ${replies[i - 1].seq}`);
        }
        for (const e of replies) seqs.add(e.seq);
    });
    assert.equal(seqs.size, SENDERS * MESSAGES, 'one seq per message');
    const texts = () => watcher.received.filter((e) => e.type === 'message').map((e) => e.text);
    await waitFor(() => texts().length >= SENDERS * MESSAGES, 15000, 20, 'every message delivered');
    for (let k = 0; k < SENDERS; k++) {
        assert.deepEqual(texts().filter((x) => x.startsWith(`s${k} `)),
            Array.from({ length: MESSAGES }, (_, i) => `s${k} m${i}`), `sender${k}: delivered in the order sent`);
    }
});
