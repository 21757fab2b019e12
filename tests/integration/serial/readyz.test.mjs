// GET /readyz follows the dependencies (PROTOCOL.md section 2, 503
// `unavailable`): 200 while Redis and PostgreSQL answer, 503 while either
// is down, 200 again once it is back; GET /healthz (the process is alive)
// stays 200 throughout.
//
// Serial: this stops the shared test Redis and PostgreSQL, and always
// starts them again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { httpGet, services, startChatd, waitFor } from '../../lib/harness.mjs';

// /readyz is answered by whichever worker takes the connection: a verdict
// counts only when a batch of fresh requests all agree.
const BATCH = 8;

async function readyzBatch(port) {
    const rs = await Promise.all(Array.from({ length: BATCH }, () => httpGet(port, '/readyz', { timeoutMs: 5000 })));
    return rs;
}

const allReady = async (port) => (await readyzBatch(port)).every((r) => r.status === 200 &&
    r.json?.status === 'ready');

async function allUnavailable(port) {
    const rs = await readyzBatch(port);
    if (!rs.every((r) => r.status === 503)) return false;
    for (const r of rs) {
        // The exact error shape of every HTTP error.
        assert.deepEqual(Object.keys(r.json ?? {}), ['error'], r.body);
        assert.equal(r.json.error.code, 'unavailable', r.body);
        assert.equal(typeof r.json.error.message, 'string');
    }
    return true;
}

/** Polls /healthz on fresh connections until stopped; records any failure. */
function watchHealthz(port) {
    const failures = [];
    let ok = 0;
    let running = true;
    const loop = (async () => {
        while (running) {
            try {
                const r = await httpGet(port, '/healthz', { timeoutMs: 5000 });
                if (r.status === 200 && r.body === '{"status":"ok"}') ok++;
                else failures.push(`${r.status} ${r.body}`);
            } catch (e) {
                failures.push(e.code || e.message);
            }
            await new Promise((resolve) => setTimeout(resolve, 20));
        }
    })();
    return {
        get ok() { return ok; },
        async stop() {
            running = false;
            await loop;
            return { ok, failures };
        },
    };
}

for (const [name, stop, start] of [['Redis', 'stop-redis', 'start-redis'], ['PostgreSQL', 'stop-pg', 'start-pg']]) {
    test(`/readyz: 503 while ${name} is down, 200 once it is back; /healthz stays 200`, async (t) => {
        const srv = await startChatd({ t, workers: 2 });
        await waitFor(() => allReady(srv.port), 15000, 100, '/readyz 200 on every worker');
        const health = watchHealthz(srv.port);
        let h;
        try {
            try {
                await services(stop);
                await waitFor(() => allUnavailable(srv.port), 20000, 100, `/readyz 503 with ${name} stopped`);
            } finally {
                await services(start);
            }
            await waitFor(() => allReady(srv.port), 30000, 100, `/readyz 200 with ${name} back`);
            const okBefore = health.ok;
            await waitFor(() => health.ok >= okBefore + 5, 10000, 20, '/healthz still polled');
        } finally {
            h = await health.stop();
        }
        assert.deepEqual(h.failures, [], `/healthz failed while ${name} was down`);
        assert.ok(h.ok > 10, `/healthz was polled throughout (${h.ok} answers)`);
    });
}
