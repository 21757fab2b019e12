// docs/openapi.yaml describes what chatd really answers.
//
// The document is parsed (npm `yaml`) and every live answer provoked here is
// looked up in it by path, method and status: the status must be documented
// for that operation (or among the answers any request may get,
// components/responses), its Content-Type must be a documented media type,
// its documented headers must be present and match their schemas, and the
// body must validate against the documented schema. The validator is a
// small JSON Schema subset written here (type, nullable, enum, required,
// properties, additionalProperties, items, allOf, oneOf with discriminator,
// minimum/maximum, minLength/maxLength, pattern, format date-time/uuid/
// int64); a schema keyword it does not know fails the test rather than
// being skipped. WebSocket events received along the way are validated
// against components/schemas/ServerEvent, and the frames sent against
// ClientFrame. At the end, every status documented for every operation
// must have been provoked and checked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import YAML from 'yaml';
import {
    expectHttpError, freePort, httpGet, openWs, rawRequest, redisCli, rnd, ROOT, startChatd, waitFor, WebSocket,
} from '../lib/harness.mjs';

const SPEC_PATH = path.join(ROOT, 'docs/openapi.yaml');
const REPLY_MS = 15000;

// ------------------------------------------------- the JSON Schema subset

const ANNOTATIONS = new Set(['description', 'example', 'examples', 'default', 'title', 'deprecated',
    'readOnly', 'writeOnly', 'externalDocs', 'xml']);
const KEYWORDS = new Set(['$ref', 'type', 'nullable', 'enum', 'required', 'properties',
    'additionalProperties', 'items', 'allOf', 'oneOf', 'discriminator', 'minimum', 'maximum',
    'minLength', 'maxLength', 'pattern', 'format', 'minItems', 'maxItems']);
const FORMATS = {
    'date-time': (v) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(v) &&
        !Number.isNaN(Date.parse(v)),
    uuid: (v) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v),
    int64: (v) => Number.isSafeInteger(v),
    int32: (v) => Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31,
};

function typeOf(v) {
    if (v === null) return 'null';
    if (Array.isArray(v)) return 'array';
    if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
    return typeof v;
}

/** Follows a local $ref ('#/a/b') in doc. */
function deref(doc, ref) {
    assert.ok(ref.startsWith('#/'), `only local $refs: ${ref}`);
    let node = doc;
    for (const part of ref.slice(2).split('/')) {
        const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
        assert.ok(node && typeof node === 'object' && key in node, `unresolvable $ref ${ref}`);
        node = node[key];
    }
    return node;
}

/** Validates value against schema; returns a list of error strings (empty: valid). */
function validate(doc, schema, value, at = '$') {
    const errors = [];
    const err = (msg) => errors.push(`${at}: ${msg}`);
    if (schema.$ref) {
        const extra = Object.keys(schema).filter((k) => k !== '$ref' && !ANNOTATIONS.has(k));
        assert.deepEqual(extra, [], `${at}: keywords beside $ref are ignored by OpenAPI 3.0`);
        return validate(doc, deref(doc, schema.$ref), value, at);
    }
    for (const k of Object.keys(schema)) {
        if (!KEYWORDS.has(k) && !ANNOTATIONS.has(k) && !k.startsWith('x-')) {
            throw new Error(`${at}: schema keyword '${k}' is not supported by this validator`);
        }
    }
    if (value === null) {
        if (schema.nullable === true) return errors;
        if (schema.type || schema.properties || schema.enum) {
            err('null but not nullable');
            return errors;
        }
    }
    if (schema.type) {
        const t = typeOf(value);
        const ok = t === schema.type || (schema.type === 'number' && t === 'integer');
        if (!ok) {
            err(`expected ${schema.type}, got ${t} ${JSON.stringify(value)?.slice(0, 80)}`);
            return errors;
        }
    }
    if (schema.enum && !schema.enum.some((e) => e === value)) err(`${JSON.stringify(value)} not in ${JSON.stringify(schema.enum)}`);
    if (typeof value === 'string') {
        const len = [...value].length;
        if (schema.minLength !== undefined && len < schema.minLength) err(`shorter than ${schema.minLength}`);
        if (schema.maxLength !== undefined && len > schema.maxLength) err(`longer than ${schema.maxLength}`);
        if (schema.pattern && !new RegExp(schema.pattern, 'u').test(value)) err(`${JSON.stringify(value)} does not match ${schema.pattern}`);
    }
    if (typeof value === 'number') {
        if (schema.minimum !== undefined && value < schema.minimum) err(`${value} < minimum ${schema.minimum}`);
        if (schema.maximum !== undefined && value > schema.maximum) err(`${value} > maximum ${schema.maximum}`);
    }
    if (schema.format) {
        const f = FORMATS[schema.format];
        assert.ok(f, `${at}: format '${schema.format}' is not supported by this validator`);
        if (!f(value)) err(`${JSON.stringify(value)} is not a ${schema.format}`);
    }
    if (Array.isArray(value)) {
        if (schema.minItems !== undefined && value.length < schema.minItems) err(`fewer than ${schema.minItems} items`);
        if (schema.maxItems !== undefined && value.length > schema.maxItems) err(`more than ${schema.maxItems} items`);
        if (schema.items) value.forEach((v, i) => errors.push(...validate(doc, schema.items, v, `${at}[${i}]`)));
    }
    if (typeOf(value) === 'object') {
        for (const r of schema.required ?? []) if (!(r in value)) err(`missing required '${r}'`);
        const props = schema.properties ?? {};
        for (const [k, v] of Object.entries(value)) {
            if (props[k]) errors.push(...validate(doc, props[k], v, `${at}.${k}`));
            else if (schema.additionalProperties === false) err(`unexpected property '${k}'`);
            else if (typeof schema.additionalProperties === 'object') {
                errors.push(...validate(doc, schema.additionalProperties, v, `${at}.${k}`));
            }
        }
    }
    for (const sub of schema.allOf ?? []) errors.push(...validate(doc, sub, value, at));
    if (schema.oneOf) {
        if (schema.discriminator) {
            const { propertyName, mapping = {} } = schema.discriminator;
            const tag = value?.[propertyName];
            const ref = mapping[tag];
            if (!ref) err(`${propertyName} ${JSON.stringify(tag)} not in the discriminator mapping`);
            else errors.push(...validate(doc, { $ref: ref }, value, `${at}<${tag}>`));
        } else {
            const passing = schema.oneOf.filter((s) => validate(doc, s, value, at).length === 0).length;
            if (passing !== 1) err(`matches ${passing} of oneOf, not exactly 1`);
        }
    }
    return errors;
}

// ----------------------------------------------------------- the document

const spec = YAML.parse(fs.readFileSync(SPEC_PATH, 'utf8'));
const resolve = (node) => (node && node.$ref ? resolve(deref(spec, node.$ref)) : node);

/** Statuses checked against the document: 'METHOD path status'. */
const covered = new Set();

/** The documented response for a path, method and status (operation, or components/responses). */
function documentedResponse(pathKey, method, status) {
    const item = spec.paths[pathKey];
    assert.ok(item, `${pathKey} is not documented`);
    // A method without its own operation is covered by `post` ("any other method").
    const name = item[method.toLowerCase()] ? method.toLowerCase() : method !== 'GET' ? 'post' : undefined;
    const op = item[name];
    assert.ok(op, `${method} ${pathKey} is not documented`);
    const r = op.responses[String(status)];
    assert.ok(r, `${method} ${pathKey}: status ${status} is not documented (documented: ${Object.keys(op.responses)})`);
    return [name, resolve(r)];
}

const mediaBase = (s) => s.split(';')[0].trim().toLowerCase();

/**
 * Checks an HTTP answer ({status, headers, body}) against the documented
 * response `doc`; `where` names it in messages. Returns the parsed body.
 */
function checkAnswer(where, doc, res) {
    for (const [name, h] of Object.entries(doc.headers ?? {})) {
        const value = res.headers[name.toLowerCase()];
        // Headers are checked when present, and must be there unless
        // marked `required: false` (OpenAPI's default, made explicit).
        if (value === undefined && resolve(h).required === false) continue;
        assert.ok(value !== undefined, `${where}: documented header ${name} missing (headers: ${JSON.stringify(res.headers)})`);
        const schema = resolve(h).schema;
        if (schema) {
            const v = schema.type === 'integer' ? Number(value) : value;
            assert.deepEqual(validate(spec, schema, v), [], `${where}: header ${name}: ${value}`);
        }
    }
    if (!doc.content) {
        assert.ok(!res.body, `${where}: a body that is not documented: ${res.body}`);
        return undefined;
    }
    const ct = res.headers['content-type'];
    assert.ok(ct, `${where}: no Content-Type`);
    const key = Object.keys(doc.content).find((k) => mediaBase(k) === mediaBase(ct));
    assert.ok(key, `${where}: Content-Type ${ct} not among ${Object.keys(doc.content)}`);
    const { schema } = doc.content[key];
    if (mediaBase(key) === 'application/json') {
        let body;
        assert.doesNotThrow(() => { body = JSON.parse(res.body); }, `${where}: body is not JSON: ${res.body}`);
        assert.deepEqual(validate(spec, schema, body), [], `${where}: body ${res.body.slice(0, 400)}`);
        return body;
    }
    assert.deepEqual(validate(spec, schema, res.body), [], `${where}: body`);
    return res.body;
}

/** Looks up and checks one answer; records the coverage. */
function check(pathKey, method, res) {
    const [name, doc] = documentedResponse(pathKey, method, res.status);
    covered.add(`${name.toUpperCase()} ${pathKey} ${res.status}`);
    return checkAnswer(`${method} ${pathKey} -> ${res.status}`, doc, res);
}

/** An answer any request may get (components/responses). */
function checkCommon(name, res, status) {
    assert.equal(res.status, status, `${name}: ${res.status} ${res.body}`);
    const doc = spec.components.responses[name];
    assert.ok(doc, `components/responses/${name} is not documented`);
    covered.add(`* ${name} ${status}`);
    return checkAnswer(`${name} -> ${status}`, doc, res);
}

const serverEvent = { $ref: '#/components/schemas/ServerEvent' };
const clientFrame = { $ref: '#/components/schemas/ClientFrame' };
/** Validates every event a client received (.received keeps them all). */
function checkEvents(c) {
    for (const ev of c.received) {
        assert.deepEqual(validate(spec, serverEvent, ev), [], `server event ${JSON.stringify(ev)}`);
    }
}
const seenEventTypes = new Set();

/** Sends a client frame after validating it against ClientFrame. */
async function send(c, frame) {
    assert.deepEqual(validate(spec, clientFrame, frame), [], `client frame ${JSON.stringify(frame)}`);
    await c.send(frame);
}

async function request(c, frame) {
    const ref = `r-${rnd()}`;
    await send(c, { ...frame, ref });
    return c.next((e) => (e.type === 'ack' || e.type === 'error') && e.ref === ref, REPLY_MS);
}

/** Parses a raw HTTP/1.1 answer (one, with Content-Length). */
function parseRaw(buf) {
    const text = buf.toString('utf8');
    const end = text.indexOf('\r\n\r\n');
    assert.ok(end > 0, `no complete head in ${JSON.stringify(text.slice(0, 200))}`);
    const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1]);
    const headers = {};
    for (const l of lines) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const body = text.slice(end + 4, end + 4 + Number(headers['content-length'] ?? 0));
    return { status, headers, body };
}

// ------------------------------------------------------------------ tests

test('the validator rejects what it must (the schemas can fail)', { timeout: 10000 }, () => {
    const msg = { $ref: '#/components/schemas/Message' };
    const good = {
        id: 1, seq: 2, room: 'general', user: { id: 'a', name: 'A' }, text: 'hi', created_at: '2026-11-26T09:31:32.123Z',
    };
    assert.deepEqual(validate(spec, msg, good), []);
    for (const bad of [
        { ...good, id: '1' },
        { ...good, extra: 1 },
        { ...good, created_at: '2026-11-26 09:31:32' },
        { ...good, created_at: '2026-11-26T09:31:32Z' }, // no milliseconds
        { ...good, room: 'bad room' },
        (({ text, ...rest }) => rest)(good),
        { ...good, user: { id: 'a' } },
        { ...good, id: 0 },
    ]) {
        assert.notDeepEqual(validate(spec, msg, bad), [], `accepted ${JSON.stringify(bad)}`);
    }
    const users = { $ref: '#/components/schemas/UserList' };
    assert.deepEqual(validate(spec, users, { room: null, users: [], count: 0 }), []);
    assert.notDeepEqual(validate(spec, users, { room: null, users: [{ id: 'a', name: 'A', role: 'member' }], count: 1 }), []);
    assert.notDeepEqual(validate(spec, { $ref: '#/components/schemas/Error' }, { error: { code: 'nope', message: '' } }), []);
    assert.notDeepEqual(validate(spec, serverEvent, { type: 'welcome' }), []);
    assert.notDeepEqual(validate(spec, serverEvent, { type: 'nonsense' }), []);
    assert.throws(() => validate(spec, { type: 'string', minimumLength: 1 }, 'x'), /not supported/);
    // Every path documents its GET.
    for (const p of ['/api/chat/messages', '/api/users', '/api/chat', '/healthz', '/readyz', '/metrics']) {
        assert.ok(spec.paths[p]?.get, `GET ${p} documented`);
    }
    assert.equal(spec.openapi.split('.')[0], '3');
    assert.equal(spec.components.securitySchemes.bearerAuth.scheme, 'bearer');
    assert.equal(spec.components.securitySchemes.bearerAuth.bearerFormat, 'JWT');
    assert.deepEqual(spec.components.securitySchemes.tokenQuery, {
        ...spec.components.securitySchemes.tokenQuery, type: 'apiKey', in: 'query', name: 'token',
    });
});

test('live answers match docs/openapi.yaml, every documented status provoked', { timeout: 120000 }, async (t) => {
    const ORIGIN = 'https://chat.example';
    const srv = await startChatd({
        t,
        workers: 2,
        env: { CHAT_ALLOWED_ORIGINS: ORIGIN, CHAT_RATE_PER_SEC: 1, CHAT_RATE_BURST: 20 },
    });
    // An instance whose Redis and PostgreSQL are unreachable: the 503s.
    const dead = await freePort();
    const broken = await startChatd({
        t,
        workers: 1,
        env: {
            CHAT_REDIS_URL: `redis://127.0.0.1:${dead}/0`,
            CHAT_PG_DSN: `postgresql://chat@127.0.0.1:${dead}/chat`,
            CHAT_MAX_CONNS_PER_IP: 2,
        },
    });
    const room = `oa-${rnd()}`;
    const tok = (claims) => srv.token(claims);
    const auth = (claims) => ({ Authorization: `Bearer ${tok(claims)}` });
    const get = (p, opts = {}) => httpGet(srv.port, p, opts);

    await waitFor(async () => (await get('/readyz')).status === 200, 15000, 100, '/readyz 200');

    // ---- operations endpoints
    check('/healthz', 'GET', await get('/healthz'));
    check('/readyz', 'GET', await get('/readyz'));
    const metrics = await get('/metrics');
    check('/metrics', 'GET', metrics);
    for (const p of ['/healthz', '/readyz', '/metrics']) {
        const r = await get(p, { method: 'POST', body: 'x' });
        assert.equal(r.status, 405);
        check(p, 'POST', r);
        assert.equal(check(p, 'DELETE', await get(p, { method: 'DELETE' })).error.code, 'method_not_allowed');
        assert.equal(check(p, 'OPTIONS', await get(p, { method: 'OPTIONS' })).error.code, 'method_not_allowed');
        // HEAD: the GET's status and headers, no body.
        const head = await get(p, { method: 'HEAD' });
        assert.equal(head.status, 200, p);
        assert.equal(head.body, '');
        const getDoc = documentedResponse(p, 'GET', 200)[1];
        assert.ok(Object.keys(getDoc.content).some((k) => mediaBase(k) === mediaBase(head.headers['content-type'])),
            `HEAD ${p}: Content-Type ${head.headers['content-type']}`);
    }

    // ---- WebSocket: 101, then events of every kind validated
    const alice = { sub: `alice-${rnd()}`, name: 'Alice' };
    const bob = { sub: `bob-${rnd()}`, name: 'Bob' };
    const org = { sub: `org-${rnd()}`, name: 'Org', role: 'organizer' };
    const upgradeHeaders = await new Promise((resolveH, rejectH) => {
        const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/api/chat?room=${room}`, { headers: auth(alice) });
        ws.once('upgrade', (res) => resolveH({ status: res.statusCode, headers: res.headers, body: '' }));
        ws.once('error', rejectH);
        ws.once('open', () => ws.terminate());
    });
    check('/api/chat', 'GET', upgradeHeaders);
    const a = await openWs(srv.wsUrl(`/api/chat?room=${room}`), { token: tok(alice) });
    const b = await openWs(srv.wsUrl(`/api/chat?room=${room}`), { token: tok(bob), tokenInQuery: true });
    const o = await openWs(srv.wsUrl(`/api/chat?room=${room}`), { token: tok(org) });
    await a.next((e) => e.type === 'join' && e.user.id === bob.sub, REPLY_MS);
    const m1 = await request(a, { type: 'message', text: 'first' });
    assert.equal(m1.type, 'ack', JSON.stringify(m1));
    await b.next((e) => e.type === 'message' && e.id === m1.id, REPLY_MS);
    const m2 = await request(b, { type: 'message', text: 'second' });
    assert.equal(m2.type, 'ack');
    const ed = await request(a, { type: 'edit', id: m1.id, text: 'first, edited' });
    assert.equal(ed.type, 'ack', JSON.stringify(ed));
    await b.next((e) => e.type === 'edit' && e.id === m1.id, REPLY_MS);
    await send(a, { type: 'typing' });
    await b.next((e) => e.type === 'typing' && e.user.id === alice.sub, REPLY_MS);
    const del = await request(b, { type: 'delete', id: m2.id });
    assert.equal(del.type, 'ack', JSON.stringify(del));
    await a.next((e) => e.type === 'delete' && e.id === m2.id, REPLY_MS);
    assert.equal((await request(a, { type: 'message', text: '   ' })).code, 'empty');
    assert.equal((await request(a, { type: 'delete', id: m2.id })).code, 'not_found');
    await a.sendRaw('{"type":"message","text":5}');
    await a.next((e) => e.type === 'error' && e.code === 'bad_request' && e.ref === undefined, REPLY_MS);
    await redisCli('PUBLISH', `${srv.prefix}control`, JSON.stringify({ op: 'notice', room, text: 'maintenance' }));
    await a.next((e) => e.type === 'notice', REPLY_MS);
    // Over the rate: rate_limited with retry_after_ms.
    let limited;
    for (let i = 0; i < 60 && !limited; i++) {
        const r = await request(o, { type: 'message', text: `burst ${i}` });
        if (r.type === 'error' && r.code === 'rate_limited') limited = r;
    }
    assert.ok(limited, 'rate_limited within 60 sends at 1/s burst 20');
    assert.ok(Number.isInteger(limited.retry_after_ms));
    // since beyond the room's position: resync.
    const rs = await openWs(srv.wsUrl(`/api/chat?room=${room}&since=99999999`), { token: tok(alice) });
    await rs.next('resync', REPLY_MS);
    // since: the replay (message, edit and delete events).
    const rp = await openWs(srv.wsUrl(`/api/chat?room=${room}&since=0`), { token: tok(bob) });
    await rp.next((e) => e.type === 'message' && e.id === m1.id, REPLY_MS);
    await rp.close();
    await b.close();
    await a.next((e) => e.type === 'leave' && e.user.id === bob.sub, REPLY_MS);
    for (const c of [a, b, o, rs, rp]) {
        checkEvents(c);
        for (const e of c.received) seenEventTypes.add(e.type);
    }
    const mapping = Object.keys(spec.components.schemas.ServerEvent.discriminator.mapping);
    assert.deepEqual([...seenEventTypes].sort(), [...mapping].sort(), 'every documented event type was seen and validated');

    // ---- history: 200 (member and organizer), 400, 401, 403
    const page = check('/api/chat/messages', 'GET', await get(`/api/chat/messages?room=${room}`, { headers: auth(alice) }));
    assert.ok(page.messages.some((m) => m.id === m1.id && m.edited_at));
    const orgPage = check('/api/chat/messages', 'GET', await get(`/api/chat/messages?room=${room}&limit=200`, { headers: auth(org) }));
    assert.ok(orgPage.messages.some((m) => m.id === m2.id && m.deleted_at), 'organizers see deleted messages');
    check('/api/chat/messages', 'GET', await get(`/api/chat/messages?room=${room}&after=0&limit=1&token=${tok(bob)}`));
    for (const q of ['', `?room=${room}&limit=0`, `?room=${room}&limit=201`, `?room=${room}&before=x`,
        `?room=${room}&before=1&after=1`, '?room=bad%20room']) {
        const r = await get(`/api/chat/messages${q}`, { headers: auth(alice) });
        assert.equal(r.status, 400, `${q}: ${r.body}`);
        check('/api/chat/messages', 'GET', r);
    }
    for (const h of [{}, { Authorization: 'Basic abc' }, { Authorization: `Bearer ${tok(alice)}x` }]) {
        const r = await get(`/api/chat/messages?room=${room}`, { headers: h });
        assert.equal(r.status, 401, r.body);
        check('/api/chat/messages', 'GET', r);
    }
    const r403 = await get(`/api/chat/messages?room=${room}`, { headers: auth({ sub: 'x', rooms: ['elsewhere'] }) });
    assert.equal(r403.status, 403);
    check('/api/chat/messages', 'GET', r403);
    const rOrigin = await get(`/api/chat/messages?room=${room}`, { headers: { ...auth(alice), Origin: 'https://evil.example' } });
    assert.equal(rOrigin.status, 403);
    check('/api/chat/messages', 'GET', rOrigin);
    // CORS on an allowed origin.
    const cors = await get(`/api/chat/messages?room=${room}`, { headers: { ...auth(alice), Origin: ORIGIN } });
    assert.equal(cors.headers['access-control-allow-origin'], ORIGIN);
    check('/api/chat/messages', 'GET', cors);

    // ---- users: 200 with and without room, 400, 401, 403
    const u1 = check('/api/users', 'GET', await get(`/api/users?room=${room}`, { headers: auth(alice) }));
    assert.ok(u1.users.some((u) => u.id === alice.sub));
    const u2 = check('/api/users', 'GET', await get('/api/users', { headers: auth(alice) }));
    assert.equal(u2.room, null);
    for (const [q, h, status] of [
        ['?room=bad%20room', auth(alice), 400],
        [`?room=${room}`, {}, 401],
        [`?room=${room}`, auth({ sub: 'y', rooms: ['elsewhere'] }), 403],
    ]) {
        const r = await get(`/api/users${q}`, { headers: h });
        assert.equal(r.status, status, r.body);
        check('/api/users', 'GET', r);
    }

    // ---- preflights and 405 on the API paths
    for (const p of ['/api/chat/messages', '/api/users', '/api/chat']) {
        const ok = await get(p, {
            method: 'OPTIONS',
            headers: { Origin: ORIGIN, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization' },
        });
        assert.equal(ok.status, 204, ok.body);
        check(p, 'OPTIONS', ok);
        assert.ok(ok.headers['access-control-allow-origin'] && ok.headers['access-control-max-age'], 'a preflight gets the CORS headers');
        assert.match(ok.headers['access-control-allow-headers'], /Authorization/i);
        const no = await get(p, { method: 'OPTIONS', headers: { Origin: 'https://evil.example' } });
        assert.equal(no.status, 403);
        check(p, 'OPTIONS', no);
        // Without Origin it is no preflight: the path's methods, no CORS.
        const plain = await get(p, { method: 'OPTIONS' });
        assert.equal(plain.status, 204, plain.body);
        check(p, 'OPTIONS', plain);
        assert.equal(plain.headers.allow, p === '/api/chat' ? 'GET, OPTIONS' : 'GET, HEAD, OPTIONS');
        assert.equal(plain.headers['access-control-allow-origin'], undefined);
        const post = await get(p, { method: 'POST', body: '{}', headers: { 'Content-Type': 'application/json' } });
        assert.equal(post.status, 405);
        check(p, 'POST', post);
        assert.match(post.headers.allow, /GET/);
        assert.equal(post.headers.allow, plain.headers.allow, 'the 405 lists the same methods');
    }

    // HEAD is not an upgrade.
    const headChat = await get(`/api/chat?room=${room}`, { method: 'HEAD' });
    assert.equal(headChat.status, 405);
    assert.match(headChat.headers.allow, /GET/);

    // ---- upgrade refusals: 400, 401, 403, 426
    const wsUrl = srv.wsUrl(`/api/chat?room=${room}`);
    const refusals = [
        [await expectHttpError(srv.wsUrl('/api/chat?room=bad%20room'), auth(alice)), 400],
        [await expectHttpError(srv.wsUrl(`/api/chat?room=${room}&since=-1`), auth(alice)), 400],
        [await get(`/api/chat?room=${room}`, { headers: { ...auth(alice), Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Version': '13' } }), 400],
        [await get(`/api/chat?room=${room}`, { headers: auth(alice) }), 400],
        [await expectHttpError(wsUrl, {}), 401],
        [await expectHttpError(wsUrl, auth({ sub: 'z', rooms: ['elsewhere'] })), 403],
        [await expectHttpError(wsUrl, { ...auth(alice), Origin: 'https://evil.example' }), 403],
        [await expectHttpError(wsUrl, auth(alice), { protocolVersion: 8 }), 426],
    ];
    const banned = `banned-${rnd()}`;
    await redisCli('SADD', `${srv.prefix}banned`, banned);
    refusals.push([await expectHttpError(wsUrl, auth({ sub: banned })), 403]);
    const bannedRest = await get(`/api/users?room=${room}`, { headers: auth({ sub: banned }) });
    assert.equal(bannedRest.status, 403);
    check('/api/users', 'GET', bannedRest);
    for (const [r, status] of refusals) {
        assert.equal(r.status, status, r.body);
        check('/api/chat', 'GET', r);
    }

    // ---- any path: 404, 431
    const nf = await get(`/no/such/path-${rnd()}`);
    assert.equal(nf.status, 404);
    assert.equal(checkCommon('NotFound', nf, 404).error.code, 'not_found');
    const big = await rawRequest(srv.port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(9000)}\r\n\r\n`,
        { until: (buf) => buf.includes('}}') });
    assert.equal(checkCommon('TooLarge', parseRaw(big), 431).error.code, 'too_large');

    // ---- the broken instance: 503 everywhere a dependency is needed
    const btok = broken.token({ sub: 'u' });
    const bget = (p, opts = {}) => httpGet(broken.port, p, { ...opts, headers: { Authorization: `Bearer ${btok}`, ...opts.headers } });
    for (const [p, key] of [['/readyz', '/readyz'], [`/api/users?room=${room}`, '/api/users'],
        [`/api/chat/messages?room=${room}`, '/api/chat/messages']]) {
        const r = await bget(p);
        assert.equal(r.status, 503, `${p}: ${r.body}`);
        assert.equal(check(key, 'GET', r).error.code, 'unavailable');
    }
    const up503 = await expectHttpError(broken.wsUrl(`/api/chat?room=${room}`), { Authorization: `Bearer ${btok}` });
    assert.equal(up503.status, 503, up503.body);
    check('/api/chat', 'GET', up503);
    // max_conns_per_ip = 2 (one worker): a third connection is refused with 429.
    const holders = [];
    for (let i = 0; i < 2; i++) {
        const sock = net.connect({ host: '127.0.0.1', port: broken.port });
        holders.push(sock);
        await new Promise((res, rej) => { sock.once('connect', res); sock.once('error', rej); });
    }
    try {
        const over = await waitFor(async () => {
            const r = await rawRequest(broken.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', { timeoutMs: 3000 });
            return r.toString().startsWith('HTTP/1.1 429') ? r : null;
        }, 10000, 50, 'a third connection from 127.0.0.1 refused with 429');
        assert.equal(checkCommon('TooManyConnections', parseRaw(over), 429).error.code, 'too_many_connections');
    } finally {
        for (const sock of holders) sock.destroy();
    }

    for (const c of [a, o, rs]) await c.close();

    // ---- coverage: every documented status of every operation was checked.
    const documented = [];
    for (const [p, item] of Object.entries(spec.paths)) {
        for (const method of ['get', 'options', 'post']) {
            if (!item[method]) continue;
            for (const status of Object.keys(item[method].responses)) documented.push(`${method.toUpperCase()} ${p} ${status}`);
        }
        for (const method of ['put', 'patch', 'delete', 'head']) assert.ok(!item[method], `${method} ${p}: add it to this test`);
    }
    const missing = documented.filter((d) => !covered.has(d));
    assert.deepEqual(missing, [], 'documented statuses never provoked by this test');
    // Answers any request may get: all but 408 (it takes a 10 s wait) are provoked.
    const text = fs.readFileSync(SPEC_PATH, 'utf8');
    const commonMissing = Object.keys(spec.components.responses).filter((name) =>
        !text.includes(`'#/components/responses/${name}'`) && name !== 'RequestTimeout' &&
        ![...covered].some((c) => c.startsWith(`* ${name} `)));
    assert.deepEqual(commonMissing, [], 'common responses never provoked');
});
