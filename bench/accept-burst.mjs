#!/usr/bin/env node
// Connection bursts against chatd in each listen_mode (reuseport, shared).
//
//   node bench/accept-burst.mjs [--workers 2] [--burst 2000] [--rounds 10]
//
// For each mode it starts bin/chatd (private Redis and PostgreSQL as for the
// tests), then runs rounds of BURST simultaneous connections, each sending
// one `GET /healthz` with `Connection: close` and reading the answer. It
// prints, per mode: requests per second over all rounds, the latency of a
// connection (connect to answer) p50/p99/max, failures, and how the work
// split over the workers (their CPU time, from /proc). Not part of
// `make test`.
import net from 'node:net';
import fs from 'node:fs';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
    return acc;
}, []));
const WORKERS = Number(args.workers ?? 2);
const BURST = Number(args.burst ?? 2000);
const ROUNDS = Number(args.rounds ?? 10);

const { startChatd } = await import('../tests/lib/harness.mjs');

function cpuTicks(pid) {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime + stime
}

function oneRequest(port) {
    return new Promise((resolve) => {
        const t0 = process.hrtime.bigint();
        const s = net.connect(port, '127.0.0.1');
        let got = '';
        const done = (ok) => {
            s.destroy();
            resolve({ ok, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
        };
        s.setTimeout(10000, () => done(false));
        s.on('connect', () => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
        s.on('data', (d) => { got += d; });
        s.on('end', () => done(got.startsWith('HTTP/1.1 200')));
        s.on('error', () => done(false));
    });
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

async function run(mode) {
    const srv = await startChatd({ workers: WORKERS, env: { CHAT_LISTEN_MODE: mode, CHAT_LOG_LEVEL: 'warn' } });
    try {
        const workers = srv.children();
        const before = workers.map(cpuTicks);
        const lat = [];
        let failed = 0;
        const t0 = process.hrtime.bigint();
        for (let r = 0; r < ROUNDS; r++) {
            const results = await Promise.all(Array.from({ length: BURST }, () => oneRequest(srv.port)));
            for (const x of results) {
                if (x.ok) lat.push(x.ms);
                else failed++;
            }
        }
        const secs = Number(process.hrtime.bigint() - t0) / 1e9;
        const cpu = workers.map((p, i) => cpuTicks(p) - before[i]);
        const total = cpu.reduce((a, b) => a + b, 0) || 1;
        lat.sort((a, b) => a - b);
        return {
            mode,
            workers: WORKERS,
            requests: BURST * ROUNDS,
            failed,
            per_sec: Math.round((BURST * ROUNDS) / secs),
            p50_ms: +pct(lat, 0.5).toFixed(2),
            p99_ms: +pct(lat, 0.99).toFixed(2),
            max_ms: +lat[lat.length - 1].toFixed(2),
            worker_cpu_share: cpu.map((c) => +(c / total).toFixed(2)),
        };
    } finally {
        await srv.stop();
    }
}

for (const mode of ['reuseport', 'shared', 'reuseport', 'shared']) {
    const r = await run(mode);
    console.log(`${mode.padEnd(9)} ${r.per_sec} req/s  p50 ${r.p50_ms} ms  p99 ${r.p99_ms} ms  ` +
        `max ${r.max_ms} ms  failed ${r.failed}  worker cpu split ${r.worker_cpu_share.join('/')}`);
    console.log(JSON.stringify(r));
}
process.exit(0);
