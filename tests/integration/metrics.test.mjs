// GET /metrics (PROTOCOL.md section 4): Prometheus text exposition format
// 0.0.4, one host's figures summed over its workers.
//
// The format is checked line by line against the exposition format rules
// (HELP and TYPE once per family and before its samples, a family's samples
// together, metric and label names, label value escapes, numeric values,
// counters named *_total, the histogram's cumulative buckets ending at
// le="+Inf" equal to _count, with _sum). Then the figures must move with
// what clients do, on a host of two workers with a connection on each:
// connections, upgrades, frames and bytes, messages stored, acks, socket
// errors by code, the broadcast and commit latency histograms, and the gauges of open
// connections going back down when clients leave. Every /metrics request is
// a fresh connection, so it lands on either worker: each must see the sum.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
    httpGet, openWs, rnd, startChatd, waitFor, workerOf,
} from '../lib/harness.mjs';

const NO_RATE = { CHAT_RATE_PER_SEC: 100000, CHAT_RATE_BURST: 100000 };
const REPLY_MS = 15000;

// ------------------------------------------------- exposition format 0.0.4

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** A sample value as the format writes it: a Go float, or NaN, +Inf, -Inf. */
function parseValue(s, where) {
    if (s === 'NaN') return NaN;
    if (s === '+Inf' || s === 'Inf') return Infinity;
    if (s === '-Inf') return -Infinity;
    assert.match(s, /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/, `${where}: value ${JSON.stringify(s)} is not a number`);
    return Number(s);
}

/** Parses `{a="x",b="y"}` at text[i] (the '{'); returns [labels, index after '}']. */
function parseLabels(text, i, where) {
    const labels = {};
    assert.equal(text[i], '{');
    i++;
    for (;;) {
        if (text[i] === '}') return [labels, i + 1];
        const m = /^([^=\s]*)="/.exec(text.slice(i));
        assert.ok(m, `${where}: malformed label at ${JSON.stringify(text.slice(i))}`);
        const name = m[1];
        assert.match(name, LABEL_NAME, `${where}: label name ${JSON.stringify(name)}`);
        assert.ok(!name.startsWith('__'), `${where}: label name ${name} is reserved`);
        assert.ok(!(name in labels), `${where}: label ${name} twice`);
        i += m[0].length;
        let value = '';
        for (;;) {
            const ch = text[i];
            assert.ok(ch !== undefined, `${where}: unterminated label value`);
            if (ch === '"') break;
            if (ch === '\\') {
                const esc = text[i + 1];
                assert.ok(esc === '\\' || esc === '"' || esc === 'n', `${where}: bad escape \\${esc}`);
                value += esc === 'n' ? '\n' : esc;
                i += 2;
            } else {
                value += ch;
                i++;
            }
        }
        labels[name] = value;
        i++;
        if (text[i] === ',') i++;
        else assert.equal(text[i], '}', `${where}: expected ',' or '}' after label ${name}`);
    }
}

/** The family a sample belongs to, given the declared types. */
function familyOf(name, types) {
    if (types.has(name)) return name;
    for (const suffix of ['_bucket', '_sum', '_count']) {
        if (name.endsWith(suffix)) {
            const base = name.slice(0, -suffix.length);
            const ty = types.get(base);
            if (ty === 'histogram' || (ty === 'summary' && suffix !== '_bucket')) return base;
        }
    }
    return null;
}

/**
 * Parses and checks a whole exposition. Returns
 * Map family -> {type, help, samples: [{name, labels, value}]}.
 */
function parseExposition(text) {
    assert.ok(text.length > 0, 'empty exposition');
    assert.ok(text.endsWith('\n'), 'the exposition must end with a newline');
    const families = new Map();
    const types = new Map();
    const seenSamples = new Set();
    const closed = new Set(); // families whose samples are finished
    let current = null; // family of the latest sample
    const lines = text.slice(0, -1).split('\n');
    lines.forEach((line, idx) => {
        const where = `line ${idx + 1} ${JSON.stringify(line)}`;
        assert.ok(!line.includes('\r'), `${where}: carriage return`);
        if (line.trim() === '') return;
        const fam = (name) => {
            if (!families.has(name)) families.set(name, { type: undefined, help: undefined, samples: [] });
            return families.get(name);
        };
        if (line.startsWith('#')) {
            const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
            if (!m) return; // a plain comment
            const [, kw, name, rest = ''] = m;
            assert.match(name, METRIC_NAME, `${where}: metric name`);
            const f = fam(name);
            assert.equal(f.samples.length, 0, `${where}: ${kw} after samples of ${name}`);
            if (kw === 'HELP') {
                assert.equal(f.help, undefined, `${where}: second HELP for ${name}`);
                assert.ok(rest.trim().length > 0, `${where}: empty HELP text`);
                assert.ok(!/\\[^\\n]/.test(rest), `${where}: HELP escapes only \\\\ and \\n`);
                f.help = rest;
            } else {
                assert.equal(f.type, undefined, `${where}: second TYPE for ${name}`);
                assert.ok(TYPES.has(rest), `${where}: unknown type ${JSON.stringify(rest)}`);
                f.type = rest;
                types.set(name, rest);
            }
            return;
        }
        const nm = /^[^{\s]+/.exec(line);
        assert.ok(nm, `${where}: no metric name`);
        const name = nm[0];
        assert.match(name, METRIC_NAME, `${where}: metric name`);
        let i = name.length;
        let labels = {};
        if (line[i] === '{') [labels, i] = parseLabels(line, i, where);
        const rest = line.slice(i);
        const vm = /^ +(\S+)(?: +(-?\d+))?$/.exec(rest);
        assert.ok(vm, `${where}: expected ' value [timestamp]' after the name and labels`);
        const value = parseValue(vm[1], where);
        const family = familyOf(name, types);
        assert.ok(family, `${where}: sample of ${name} without a TYPE line before it`);
        if (current !== family) {
            assert.ok(!closed.has(family), `${where}: samples of ${family} are not together`);
            if (current) closed.add(current);
            current = family;
        }
        const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
        assert.ok(!seenSamples.has(key), `${where}: duplicate sample`);
        seenSamples.add(key);
        fam(family).samples.push({ name, labels, value });
    });
    return families;
}

/** Checks the rules each type adds, for every family. */
function checkFamilies(families) {
    for (const [name, f] of families) {
        assert.ok(f.help !== undefined, `${name}: no # HELP line`);
        assert.ok(f.type !== undefined, `${name}: no # TYPE line`);
        assert.ok(f.samples.length > 0, `${name}: HELP/TYPE but no sample`);
        assert.ok(name.startsWith('chatd_'), `${name}: not in the chatd_ namespace`);
        if (f.type === 'counter') {
            assert.ok(name.endsWith('_total'), `counter ${name} must end in _total`);
            for (const s of f.samples) {
                assert.equal(s.name, name);
                assert.ok(Number.isInteger(s.value) && s.value >= 0, `counter ${name}: ${s.value}`);
            }
        } else if (f.type === 'gauge') {
            assert.ok(!name.endsWith('_total'), `gauge ${name} must not end in _total`);
            for (const s of f.samples) assert.ok(Number.isFinite(s.value), `gauge ${name}: ${s.value}`);
        } else if (f.type === 'histogram') {
            checkHistogram(name, f.samples);
        }
    }
}

function checkHistogram(name, samples) {
    const buckets = samples.filter((s) => s.name === `${name}_bucket`);
    const sums = samples.filter((s) => s.name === `${name}_sum`);
    const counts = samples.filter((s) => s.name === `${name}_count`);
    assert.ok(buckets.length >= 2, `${name}: buckets`);
    assert.equal(sums.length, 1, `${name}: one _sum`);
    assert.equal(counts.length, 1, `${name}: one _count`);
    let prevLe = -Infinity;
    let prevCount = 0;
    for (const b of buckets) {
        assert.deepEqual(Object.keys(b.labels), ['le'], `${name}_bucket labels`);
        const le = parseValue(b.labels.le, `${name}_bucket le`);
        assert.ok(le > prevLe, `${name}: le ${b.labels.le} not increasing`);
        assert.ok(Number.isInteger(b.value) && b.value >= prevCount,
            `${name}: bucket le=${b.labels.le} (${b.value}) below the one before (${prevCount}): not cumulative`);
        prevLe = le;
        prevCount = b.value;
    }
    assert.equal(buckets.at(-1).labels.le, '+Inf', `${name}: the last bucket must be le="+Inf"`);
    assert.equal(buckets.at(-1).value, counts[0].value, `${name}: le="+Inf" bucket equals _count`);
    assert.ok(Number.isFinite(sums[0].value) && sums[0].value >= 0, `${name}_sum ${sums[0].value}`);
    assert.ok(counts[0].value > 0 || sums[0].value === 0, `${name}: _sum without observations`);
}

// --------------------------------------------------------------- helpers

async function scrape(port) {
    const r = await httpGet(port, '/metrics', { timeoutMs: 5000 });
    assert.equal(r.status, 200, r.body);
    assert.match(r.headers['content-type'], /^text\/plain;\s*version=0\.0\.4(;|$)/, 'Content-Type');
    const families = parseExposition(r.body);
    checkFamilies(families);
    return families;
}

/** The value of one sample (name plus exact labels), or undefined. */
function value(families, name, labels = {}) {
    for (const f of families.values()) {
        for (const s of f.samples) {
            if (s.name === name && JSON.stringify(Object.entries(s.labels).sort()) ===
                JSON.stringify(Object.entries(labels).sort())) return s.value;
        }
    }
    return undefined;
}

const must = (families, name, labels = {}) => {
    const v = value(families, name, labels);
    assert.notEqual(v, undefined, `no sample ${name}${JSON.stringify(labels)}`);
    return v;
};

const EXPECTED = {
    counter: [
        'chatd_connections_accepted_total', 'chatd_websocket_upgrades_total', 'chatd_frames_in_total',
        'chatd_frames_out_total', 'chatd_messages_stored_total', 'chatd_message_batches_total',
        'chatd_acks_total', 'chatd_errors_total', 'chatd_slow_consumer_closes_total', 'chatd_redis_errors_total', 'chatd_postgres_errors_total',
    ],
    gauge: ['chatd_connections_open', 'chatd_websocket_connections_open'],
    histogram: ['chatd_broadcast_latency_seconds', 'chatd_message_commit_seconds'],
};
const ERROR_CODES = ['bad_request', 'unknown_type', 'empty', 'too_long', 'forbidden', 'not_found',
    'edit_window_closed', 'rate_limited', 'unavailable'];

/** Opens connections until one is on each of the host's two workers; closes the others. */
async function onBothWorkers(srv, room, sub) {
    const byWorker = new Map();
    const extras = [];
    let opened = 0;
    try {
        while (byWorker.size < 2) {
            assert.ok(opened < 60, `60 connections and not both workers: ${[...byWorker.keys()]}`);
            const c = await openWs(srv.wsUrl(`/api/chat?room=${room}`), { token: srv.token({ sub }) });
            opened++;
            const k = workerOf(c);
            if (byWorker.has(k)) extras.push(c);
            else byWorker.set(k, c);
        }
    } finally {
        await Promise.all(extras.map((c) => c.close()));
    }
    return { clients: [...byWorker.values()], opened };
}

async function request(c, req) {
    const ref = `r-${rnd()}`;
    await c.send({ ...req, ref });
    return c.next((e) => (e.type === 'ack' || e.type === 'error') && e.ref === ref, REPLY_MS);
}

// ------------------------------------------------------------------ tests

test('/metrics: the exposition format 0.0.4, every family documented and typed', { timeout: 60000 }, async (t) => {
    const srv = await startChatd({ t, workers: 2 });
    // Several fresh connections: both workers render.
    for (let i = 0; i < 6; i++) {
        const families = await scrape(srv.port);
        for (const [type, names] of Object.entries(EXPECTED)) {
            for (const n of names) {
                assert.ok(families.has(n), `family ${n} missing`);
                assert.equal(families.get(n).type, type, `${n} type`);
            }
        }
        for (const code of ERROR_CODES) must(families, 'chatd_errors_total', { code });
    }
    // The checker itself must be able to fail.
    const bad = [
        'chatd_x_total 1\n', // no TYPE
        '# HELP chatd_x_total x\n# TYPE chatd_x_total counter\nchatd_x_total one\n',
        '# HELP chatd_x x\n# TYPE chatd_x counter\nchatd_x 1\n', // counter without _total
        '# HELP chatd_h h\n# TYPE chatd_h histogram\nchatd_h_bucket{le="1"} 2\nchatd_h_bucket{le="2"} 1\n' +
            'chatd_h_bucket{le="+Inf"} 2\nchatd_h_sum 1\nchatd_h_count 2\n', // not cumulative
        '# HELP chatd_h h\n# TYPE chatd_h histogram\nchatd_h_bucket{le="1"} 1\nchatd_h_sum 1\nchatd_h_count 1\n',
        '# HELP chatd_a_total a\n# TYPE chatd_a_total counter\nchatd_a_total{code="x} 1\n',
        '# HELP chatd_a_total a\n# TYPE chatd_a_total counter\nchatd_a_total 1',
        '# HELP 1bad a\n# TYPE 1bad gauge\n1bad 1\n',
    ];
    for (const text of bad) {
        assert.throws(() => checkFamilies(parseExposition(text)), undefined, `accepted: ${JSON.stringify(text)}`);
    }
    checkFamilies(parseExposition('# HELP chatd_h h\n# TYPE chatd_h histogram\nchatd_h_bucket{le="0.1"} 1\n' +
        'chatd_h_bucket{le="+Inf"} 2\nchatd_h_sum 0.3\nchatd_h_count 2\n'));
});

test('/metrics: the figures move with traffic, summed over both workers', { timeout: 90000 }, async (t) => {
    const srv = await startChatd({ t, workers: 2, env: NO_RATE });
    const room = `metrics-${rnd()}`;
    const before = await scrape(srv.port);
    const b = (name, labels) => must(before, name, labels);

    const { clients, opened } = await onBothWorkers(srv, room, `u-${rnd()}`);
    const [c0, c1] = clients;

    // The gauges count both workers' sockets, whichever worker answers.
    for (let i = 0; i < 8; i++) {
        await waitFor(async () => must(await scrape(srv.port), 'chatd_websocket_connections_open') === 2,
            10000, 50, 'chatd_websocket_connections_open = 2 (one per worker) from any worker');
    }

    // One message from each worker: both stored, acked and broadcast to both.
    const texts = [];
    for (const c of clients) {
        const text = `hello ${rnd()}`;
        texts.push(text);
        const r = await request(c, { type: 'message', text });
        assert.equal(r.type, 'ack', JSON.stringify(r));
    }
    for (const c of clients) {
        for (const text of texts) await c.next((e) => e.type === 'message' && e.text === text, REPLY_MS);
    }
    // Socket errors by code.
    const empty = await request(c0, { type: 'message', text: '  ' });
    assert.equal(empty.code, 'empty');
    const unknown = await request(c1, { type: 'shout' });
    assert.equal(unknown.code, 'unknown_type');
    const notFound = await request(c1, { type: 'delete', id: 999999999 });
    assert.equal(notFound.code, 'not_found');

    const after = await waitFor(async () => {
        const m = await scrape(srv.port);
        return must(m, 'chatd_broadcast_latency_seconds_count') >= b('chatd_broadcast_latency_seconds_count') + 2
            ? m : null;
    }, 10000, 50, 'chatd_broadcast_latency_seconds_count +2 (one broadcast per message and worker)');
    const a = (name, labels) => must(after, name, labels);
    const delta = (name, labels) => a(name, labels) - b(name, labels);

    assert.ok(delta('chatd_connections_accepted_total') >= opened + 1,
        `connections accepted: +${delta('chatd_connections_accepted_total')}, opened ${opened} sockets and scraped`);
    assert.ok(delta('chatd_websocket_upgrades_total') >= opened,
        `upgrades: +${delta('chatd_websocket_upgrades_total')}, opened ${opened}`);
    assert.equal(a('chatd_websocket_connections_open'), 2);
    assert.ok(a('chatd_connections_open') >= 3, `connections open ${a('chatd_connections_open')} (2 sockets + this scrape)`);
    // 2 messages + 3 faulty requests, at least (pings/closes may add).
    assert.ok(delta('chatd_frames_in_total') >= 5, `frames in: +${delta('chatd_frames_in_total')}`);
    // Welcomes, 2 acks, 2 messages to each of 2 clients, 3 errors.
    assert.ok(delta('chatd_frames_out_total') >= opened + 2 + 4 + 3, `frames out: +${delta('chatd_frames_out_total')}`);
    assert.ok(delta('chatd_ws_bytes_in_total') > 0 && delta('chatd_ws_bytes_out_total') > 0, 'bytes in and out');
    assert.equal(delta('chatd_messages_stored_total'), 2, 'messages stored');
    // Each was sent after the other's ack: two commits.
    assert.equal(delta('chatd_message_batches_total'), 2, 'message batches');
    assert.equal(delta('chatd_message_commit_seconds_count'), 2, 'message commits timed');
    assert.ok(delta('chatd_message_commit_seconds_sum') > 0, 'message commits take time');
    assert.equal(delta('chatd_acks_total'), 2, 'acks');
    assert.equal(delta('chatd_errors_total', { code: 'empty' }), 1, 'errors{code="empty"}');
    assert.equal(delta('chatd_errors_total', { code: 'unknown_type' }), 1, 'errors{code="unknown_type"}');
    assert.equal(delta('chatd_errors_total', { code: 'not_found' }), 1, 'errors{code="not_found"}');
    assert.equal(delta('chatd_errors_total', { code: 'too_long' }), 0, 'errors{code="too_long"}');
    assert.equal(delta('chatd_slow_consumer_closes_total'), 0, 'no slow consumer');
    assert.ok(delta('chatd_broadcast_latency_seconds_sum') > 0, 'latency sum grows');

    // Counters are the same from either worker (fresh connections each time);
    // none goes backwards.
    for (let i = 0; i < 6; i++) {
        const m = await scrape(srv.port);
        for (const n of ['chatd_messages_stored_total', 'chatd_acks_total', 'chatd_broadcast_latency_seconds_count']) {
            assert.equal(must(m, n), a(n), `${n} seen from another scrape`);
        }
        assert.equal(must(m, 'chatd_errors_total', { code: 'empty' }), a('chatd_errors_total', { code: 'empty' }));
        assert.ok(must(m, 'chatd_connections_accepted_total') > a('chatd_connections_accepted_total') - 1);
    }

    // Gauges come back down when the clients leave.
    await Promise.all(clients.map((c) => c.close()));
    await waitFor(async () => {
        const m = await scrape(srv.port);
        // Only the scrape's own connection (and perhaps one closing) is left.
        return must(m, 'chatd_websocket_connections_open') === 0 && must(m, 'chatd_connections_open') <= 2;
    }, 10000, 50, 'open connection gauges back to 0 after the clients closed');
});

test('/metrics: a dead worker\'s counts are kept, its gauges dropped', { timeout: 90000 }, async (t) => {
    const srv = await startChatd({ t, workers: 2, env: NO_RATE });
    const room = `metrics-${rnd()}`;
    const { clients } = await onBothWorkers(srv, room, `u-${rnd()}`);
    for (const c of clients) assert.equal((await request(c, { type: 'message', text: `m ${rnd()}` })).type, 'ack');
    const before = await waitFor(async () => {
        const m = await scrape(srv.port);
        return must(m, 'chatd_websocket_connections_open') === 2 && must(m, 'chatd_acks_total') === 2 ? m : null;
    }, 10000, 50, 'two sockets open and two acks counted');

    const workers = srv.children();
    assert.equal(workers.length, 2, `workers: ${workers}`);
    process.kill(workers[0], 'SIGKILL');
    // One client loses its worker; the master starts a new one.
    await waitFor(() => clients.some((c) => c.closeInfo), 10000, 20, 'a client of the killed worker is closed');
    await waitFor(() => srv.children().length === 2 && !srv.children().includes(workers[0]), 15000, 50,
        'the killed worker is replaced');
    const after = await waitFor(async () => {
        const m = await scrape(srv.port);
        return must(m, 'chatd_websocket_connections_open') === 1 ? m : null;
    }, 10000, 50, 'the dead worker\'s socket no longer counted as open');
    for (const n of ['chatd_connections_accepted_total', 'chatd_websocket_upgrades_total', 'chatd_frames_in_total',
        'chatd_frames_out_total', 'chatd_messages_stored_total', 'chatd_acks_total',
        'chatd_broadcast_latency_seconds_count']) {
        assert.ok(must(after, n) >= must(before, n), `${n} went backwards: ${must(before, n)} -> ${must(after, n)}`);
    }
    assert.equal(must(after, 'chatd_messages_stored_total'), 2);
    assert.equal(must(after, 'chatd_acks_total'), 2);
    await Promise.all(clients.map((c) => c.close()));
});
