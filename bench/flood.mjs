#!/usr/bin/env node
// What one flooding client costs: a connection that sends message frames
// as fast as it can, without waiting for replies.
//
//   node bench/flood.mjs [--frames 100000] [--no-rate] [--workers 1]
//
// Starts bin/chatd (CHATD_BIN to choose another build) on the private Redis
// and PostgreSQL (scripts/services.sh start, chat_test migrated, as for the
// tests), opens one connection, resets Redis's command statistics, and
// sends --frames message frames of 100 bytes of text. With the default
// rate (5/s, burst 10) almost all are refused rate_limited; with --no-rate
// the rate is raised out of the way and every one is stored. Waits for
// one reply per frame, then prints: how long sending and answering took,
// the replies by kind, the worker's largest RSS seen meanwhile, Redis's
// script calls and their time (INFO commandstats), and chatd's counters
// of refusals given without Redis and of paused reads.
// Not part of `make test`.

import fs from 'node:fs';
import { childPids, httpGet, mintToken, NO_RATE, openWs, redisCli, sleep, startChatd }
    from '../tests/lib/harness.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : dflt;
};
const frames = opt('--frames', 100000);
const workers = opt('--workers', 1);
const noRate = args.includes('--no-rate');

const srv = await startChatd({ workers, env: noRate ? NO_RATE : {} });
try {
    const rssKb = () => [srv.pid, ...childPids(srv.pid)].reduce((sum, pid) => {
        try {
            return sum + Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
        } catch {
            return sum;
        }
    }, 0);
    const c = await openWs(srv.wsUrl(`/api/chat?room=flood-${Date.now()}`),
        { token: mintToken(srv.secret, { sub: `flooder-${Date.now()}`, name: 'Flooder' }) });
    const kinds = {};
    let replies = 0;
    c.ws.on('message', (data) => {
        const ev = JSON.parse(String(data));
        if (ev.type !== 'ack' && ev.type !== 'error') return;
        replies++;
        const k = ev.type === 'ack' ? 'ack' : ev.code;
        kinds[k] = (kinds[k] ?? 0) + 1;
    });
    await redisCli('CONFIG', 'RESETSTAT');
    const rss0 = rssKb();
    let rssMax = rss0;
    const text = 'x'.repeat(100);
    const t0 = Date.now();
    for (let i = 0; i < frames; i++) {
        c.ws.send(JSON.stringify({ type: 'message', text, ref: `f${i}` }));
        // Let the socket drain now and then, and look at the memory.
        if (i % 2000 === 1999) {
            await sleep(1);
            rssMax = Math.max(rssMax, rssKb());
        }
    }
    const sentMs = Date.now() - t0;
    while (replies < frames && Date.now() - t0 < 120000) {
        await sleep(20);
        rssMax = Math.max(rssMax, rssKb());
    }
    const doneMs = Date.now() - t0;
    const stats = (await redisCli('INFO', 'commandstats')).split('\n')
        .filter((l) => /^cmdstat_(evalsha|eval):/.test(l)).map((l) => l.trim());
    const metrics = (await httpGet(srv.port, '/metrics')).body.split('\n')
        .filter((l) => /^chatd_(rate_limited_locally|websocket_reads_paused)_total /.test(l));
    console.log(`flood: ${frames} frames sent in ${sentMs} ms, ${replies} replies by ${doneMs} ms: ${JSON.stringify(kinds)}`);
    console.log(`flood: chatd RSS (master and workers) ${rss0} KB before, at most ${rssMax} KB during`);
    console.log(`flood: Redis ${stats.join('; ') || 'no script calls'}`);
    console.log(`flood: ${metrics.join('; ') || 'no such counters (an older chatd)'}`);
    c.terminate();
} finally {
    await srv.stop();
}
