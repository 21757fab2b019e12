// Self-test of tests/lib/harness.mjs. Needs the private Redis and
// PostgreSQL (scripts/services.sh start) but not chatd's WebSocket endpoint:
// the WebSocket and HTTP helpers are checked against local stand-ins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { WebSocketServer } from 'ws';
import {
    ROOT, decodeToken, expectHttpError, httpGet, mintToken, nowSec, openWs, psql, rawRequest,
    redisCli, sleep, startChatd, waitFor,
} from '../lib/harness.mjs';

const part = (tok, i) => JSON.parse(Buffer.from(tok.split('.')[i], 'base64url').toString('utf8'));

test('mintToken: HS256 token structure and signature', () => {
    const secret = 's3cret';
    const tok = mintToken(secret, { sub: 'alice', name: 'Alice', role: 'member', rooms: ['a', 'b'], exp: 2000000000 });
    const [h, p, s] = tok.split('.');
    assert.match(tok, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    assert.deepEqual(part(tok, 0), { alg: 'HS256', typ: 'JWT' });
    assert.deepEqual(part(tok, 1), { sub: 'alice', name: 'Alice', role: 'member', rooms: ['a', 'b'], exp: 2000000000 });
    const want = crypto.createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
    assert.equal(s, want);
    assert.equal(decodeToken(tok, secret).valid, true);
    assert.equal(decodeToken(tok, 'other').valid, false);
});

test('mintToken: bad tokens', () => {
    const secret = 'k';
    const none = mintToken(secret, { sub: 'x', alg: 'none' });
    assert.equal(part(none, 0).alg, 'none');
    assert.ok(none.endsWith('.'), 'alg none has an empty signature');
    assert.equal(decodeToken(none, secret).valid, false);

    const hs512 = mintToken(secret, { sub: 'x', alg: 'HS512' });
    assert.equal(part(hs512, 0).alg, 'HS512');
    assert.equal(Buffer.from(hs512.split('.')[2], 'base64url').length, 64);
    assert.equal(decodeToken(hs512, secret).valid, true);

    const bad = mintToken(secret, { sub: 'x', badSignature: true });
    assert.equal(decodeToken(bad, secret).valid, false);
    assert.equal(bad.split('.')[2].length, mintToken(secret, { sub: 'x' }).split('.')[2].length);

    const lying = mintToken(secret, { sub: 'x', header: { alg: 'HS512', kid: '7' } });
    assert.deepEqual(part(lying, 0), { alg: 'HS512', typ: 'JWT', kid: '7' });
    assert.equal(decodeToken(lying, secret).valid, false, 'signed HS256 while claiming HS512');

    const ttl = part(mintToken(secret, { sub: 'x', ttl: 60, nbf: 5, role: undefined }), 1);
    assert.ok(Math.abs(ttl.exp - (nowSec() + 60)) <= 2);
    assert.equal(ttl.nbf, 5);
    assert.ok(!('role' in ttl));

    const raw = mintToken(secret, { rawPayload: '{"sub":' });
    assert.equal(Buffer.from(raw.split('.')[1], 'base64url').toString(), '{"sub":');
});

test('redisCli: PING', async () => {
    assert.equal(await redisCli('PING'), 'PONG');
    const key = `harness-selftest:${process.pid}`;
    await redisCli('SET', key, 'v', 'EX', '10');
    assert.equal(await redisCli('GET', key), 'v');
    await redisCli('DEL', key);
});

test('psql: SELECT 1 on the test database as chat', async () => {
    assert.equal(await psql('SELECT 1'), '1');
    assert.equal(await psql('SELECT current_user, current_database()'), 'chat|chat_test');
    await assert.rejects(psql('SELECT * FROM no_such_table_here'), /no_such_table_here/);
});

test('waitFor: polls until truthy, bounded', async () => {
    let n = 0;
    assert.equal(await waitFor(() => (++n >= 3 ? 'yes' : 0), 2000, 10), 'yes');
    await assert.rejects(waitFor(() => false, 100, 10), /within 100 ms/);
});

test('httpGet and rawRequest against a local server', async (t) => {
    const srv = http.createServer((req, res) => {
        res.writeHead(req.url === '/j' ? 200 : 404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ path: req.url, method: req.method }));
    });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    t.after(() => new Promise((r) => srv.close(r)));
    const { port } = srv.address();

    const r = await httpGet(port, '/j', { headers: { 'x-a': '1' } });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { path: '/j', method: 'GET' });
    assert.equal((await httpGet(port, '/nope', { method: 'DELETE' })).json.method, 'DELETE');

    // Two pipelined requests; the second asks to close.
    const raw = await rawRequest(port,
        'GET /j HTTP/1.1\r\nHost: x\r\n\r\nGET /k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(raw.toString().match(/HTTP\/1\.1 \d+/g).join(','), 'HTTP/1.1 200,HTTP/1.1 404');
    assert.equal(raw.timedOut, false);

    const part1 = await rawRequest(port, ['GET /j HTTP/1.1\r\n', 'Host: x\r\n\r\n'],
        { gapMs: 20, until: (b) => b.includes('"method"') });
    assert.match(part1.toString(), /^HTTP\/1\.1 200/);

    const silent = await rawRequest(port, 'GET /j HTTP/1.1\r\n', { timeoutMs: 200 });
    assert.equal(silent.timedOut, true);
    assert.equal(silent.length, 0);
});

test('openWs, next, expectNone, waitClose and expectHttpError against a local ws server', async (t) => {
    const wss = new WebSocketServer({
        host: '127.0.0.1',
        port: 0,
        verifyClient: (info, cb) => {
            if (info.req.headers.authorization === 'Bearer good' || info.req.url.includes('token=good')) cb(true);
            else cb(false, 401, 'Unauthorized', { 'Content-Type': 'application/json' });
        },
    });
    await new Promise((r) => wss.once('listening', r));
    t.after(() => new Promise((r) => wss.close(r)));
    wss.on('connection', (sock) => {
        sock.send(JSON.stringify({ type: 'welcome', room: 'general', last_seq: 0 }));
        sock.on('message', (data, isBinary) => {
            if (isBinary) return sock.close(1003, 'binary');
            const m = JSON.parse(data.toString());
            if (m.type === 'burst') {
                for (let i = 1; i <= 3; i++) sock.send(JSON.stringify({ type: 'message', seq: i }));
                sock.send(JSON.stringify({ type: 'ack', ref: m.ref }));
            } else if (m.type === 'bye') {
                sock.close(4003, 'kicked');
            }
        });
    });
    const url = `ws://127.0.0.1:${wss.address().port}/api/chat?room=general`;

    const c = await openWs(url, { token: 'good' });
    assert.equal(c.welcome.type, 'welcome');
    await c.send({ type: 'burst', ref: 'r1' });
    // Out of order on purpose: the ack is taken first, the messages stay queued.
    assert.deepEqual(await c.next({ type: 'ack', ref: 'r1' }), { type: 'ack', ref: 'r1' });
    assert.equal((await c.next((e) => e.type === 'message' && e.seq === 2)).seq, 2);
    assert.equal((await c.next('message')).seq, 1);
    assert.equal((await c.next('message')).seq, 3);
    await assert.rejects(c.next('message', 100), /no event matching/);
    await c.expectNone('message', 50);
    await c.send({ type: 'bye' });
    assert.deepEqual(await c.waitClose(2000), { code: 4003, reason: 'kicked' });
    await assert.rejects(c.next('anything', 100), /closed \(4003/);

    const q = await openWs(url, { token: 'good', tokenInQuery: true });
    await q.sendRaw(Buffer.from([1, 2, 3]), { binary: true });
    assert.equal((await q.waitClose()).code, 1003);

    const raw = await openWs(url, { token: 'good', expectWelcome: false });
    assert.equal((await raw.next()).type, 'welcome');
    assert.equal((await raw.close()).code, 1000);

    const refused = await expectHttpError(url, { Authorization: 'Bearer bad' });
    assert.equal(refused.status, 401);
    await assert.rejects(openWs(url, { token: 'bad' }), (e) => e.status === 401);
    await assert.rejects(expectHttpError(url, { Authorization: 'Bearer good' }), /accepted/);
});

const chatd = path.join(ROOT, 'bin/chatd');
test('startChatd: /healthz, logs, stop', { skip: !fs.existsSync(chatd) && 'bin/chatd not built' }, async (t) => {
    const s = await startChatd({ t, workers: 1 });
    const r = await httpGet(s.port, '/healthz');
    assert.equal(r.status, 200);
    assert.ok(s.prefix.startsWith('t') && s.prefix.endsWith(':'));
    assert.equal(typeof s.logs(), 'string');
    await sleep(10);
    const res = await s.stop();
    assert.equal(res.code, 0, `chatd exit ${JSON.stringify(res)}\n${s.logs()}`);
    assert.deepEqual(res.leftover, []);
});
