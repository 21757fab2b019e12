/**
 * The write path's SQL functions, called directly on the test database:
 * chat_post_one (a batch of one, the store's path for a lone message) and
 * chat_post_batch must number, store, log and describe a message alike,
 * and both must answer a repeated ref with the original.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { env, psql, roomName, sq, waitFor } from '../lib/harness.mjs';

const TS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** chat_post_one's row as an object. */
async function postOne(room, user, name, text, ref) {
    const out = await psql(`SELECT row_to_json(r) FROM chat_post_one(${[room, user, name, text, ref].map(sq).join(', ')}) r`);
    const rows = out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    assert.equal(rows.length, 1, out);
    return rows[0];
}

/** chat_post_batch's rows, in order. */
async function postBatch(messages) {
    const arg = sq(JSON.stringify(messages));
    const out = await psql(`SELECT row_to_json(r) FROM chat_post_batch(${arg}::json) r ORDER BY r.ord`);
    return out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

/** What the event says besides its numbers and time. */
const shape = (ev) => {
    const { id, seq, created_at: at, ...rest } = ev;
    assert.ok(Number.isInteger(id) && Number.isInteger(seq) && TS.test(at), JSON.stringify(ev));
    return rest;
};

test('store SQL: chat_post_one stores, numbers and describes a message as chat_post_batch does', async () => {
    const room = roomName('sql-one');
    // Text and names that need escaping, and a room created by this call.
    const name = 'Ann "the" \\ \u00e9\u00e8 \u{1F600}';
    const text = 'line one\nline "two"\t\u0001 \u2028';
    const one = await postOne(room, 'u1', name, text, 'r1');
    assert.equal(one.ord, 1);
    assert.equal(one.seq, 1, 'a new room starts at 1');
    assert.equal(one.duplicate, false);
    assert.match(one.created_at, TS);
    const ev = JSON.parse(one.payload);
    assert.deepEqual(Object.keys(ev), ['type', 'id', 'seq', 'room', 'user', 'text', 'created_at', 'ref']);
    assert.deepEqual([ev.id, ev.seq, ev.created_at], [one.id, one.seq, one.created_at]);
    assert.deepEqual(shape(ev), { type: 'message', room, user: { id: 'u1', name }, text, ref: 'r1' });

    // The batch function continues the room's numbering, and its event
    // for the same message differs only in the numbers and the time.
    const [b] = await postBatch([[room, 'u1', name, text, 'r2']]);
    assert.equal(b.seq, 2);
    assert.ok(b.id > one.id);
    assert.deepEqual(shape(JSON.parse(b.payload)), { ...shape(ev), ref: 'r2' });

    // Without a ref: no "ref" key, and the next seq.
    const bare = await postOne(room, 'u2', 'Bo', 'no ref', null);
    assert.equal(bare.seq, 3);
    assert.deepEqual(Object.keys(JSON.parse(bare.payload)), ['type', 'id', 'seq', 'room', 'user', 'text', 'created_at']);

    // A repeated ref, from either function, answers with the original and
    // stores, numbers and logs nothing.
    for (const again of [await postOne(room, 'u1', 'other name', 'other text', 'r1'),
        (await postBatch([[room, 'u1', 'x', 'y', 'r1']]))[0]]) {
        assert.deepEqual(again, { ord: 1, id: one.id, seq: one.seq, created_at: one.created_at, payload: null, duplicate: true });
    }
    const dupOfBatch = await postOne(room, 'u1', name, text, 'r2');
    assert.deepEqual([dupOfBatch.id, dupOfBatch.seq, dupOfBatch.duplicate], [b.id, b.seq, true]);
    // The same ref from another user is another message.
    assert.equal((await postOne(room, 'u9', 'Nine', 'mine', 'r1')).seq, 4);

    assert.equal(await psql(`SELECT seq FROM rooms WHERE name = ${sq(room)}`), '4');
    assert.equal(await psql(`SELECT count(*) FROM messages WHERE room = ${sq(room)}`), '4');
    // The event log holds exactly what was returned.
    const logged = await psql(`SELECT payload FROM room_events WHERE room = ${sq(room)} AND seq = 1`);
    assert.deepEqual(JSON.parse(logged), ev);
    const row = await psql(`SELECT user_name || '|' || body || '|' || created_seq FROM messages WHERE id = ${one.id}`);
    assert.equal(row, `${name}|${text}|1`);
});

test('store SQL: chat_post_one calls in one transaction, as the store sends a small batch', async () => {
    // The store sends up to eight messages as chat_post_one calls in one
    // transaction: a ref repeated within it is answered with the first,
    // and rooms are numbered on.
    const [a, b] = [roomName('sql-tx-a'), roomName('sql-tx-b')].sort();
    const call = (room, user, text, ref) =>
        `SELECT row_to_json(r) FROM chat_post_one(${[room, user, 'N', text, ref].map(sq).join(', ')}) r;`;
    const out = await psql([
        call(a, 'u1', 'one', 'x1'), call(a, 'u1', 'two', 'x2'), call(a, 'u1', 'one again', 'x1'),
        call(b, 'u1', 'three', 'x1'),
    ].join(' '));
    const rows = out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    assert.equal(rows.length, 4, out);
    assert.deepEqual(rows.map((r) => [r.seq, r.duplicate]), [[1, false], [2, false], [1, true], [1, false]]);
    assert.deepEqual([rows[2].id, rows[2].created_at, rows[2].payload], [rows[0].id, rows[0].created_at, null]);
    assert.ok(rows[0].id < rows[1].id && rows[1].id < rows[3].id, 'ids in call order');
    assert.equal(await psql(`SELECT string_agg(name || '=' || seq, ',' ORDER BY name) FROM rooms WHERE name IN (${sq(a)}, ${sq(b)})`),
        `${a}=2,${b}=1`);
    // All or nothing: a failing call leaves nothing of the others.
    const c = roomName('sql-tx-c');
    await assert.rejects(psql(`${call(c, 'u1', 'kept?', 'y1')} SELECT 1/0;`));
    assert.equal(await psql(`SELECT count(*) FROM messages WHERE room = ${sq(c)}`), '0');
});

/** A psql session fed statement by statement; resolves each with its output. */
function session(t) {
    const p = spawn('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', env.pgTestDsn],
        { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    t.after(() => p.kill());
    return {
        /** Sends one statement that prints one line, and waits for that line. */
        async line(sql) {
            const before = out.split('\n').length;
            p.stdin.write(`${sql}\n`);
            await waitFor(() => out.split('\n').length > before || err !== '' || p.exitCode !== null,
                10000, 20, `psql: ${sql}`);
            assert.equal(err, '', `psql: ${sql}`);
            return out.split('\n')[before - 1];
        },
        err: () => err,
    };
}

test('store SQL: a new room cannot deadlock chat_post_one calls against a chat_post_batch', async (t) => {
    // One transaction posts to a new room A, then to an existing room B,
    // one call each, as the store sends a small batch (rooms in name
    // order). A batch for both rooms arrives in between. It must wait for
    // A without holding B: had it locked the existing B first and then
    // waited to create A, the first transaction's call for B would close
    // a cycle, and PostgreSQL would abort one of them.
    const [a, b] = [roomName('lock-a'), roomName('lock-b')].sort();
    assert.ok(a < b);
    await postOne(b, 'u0', 'N', 'B exists', null);
    const one = session(t);
    assert.equal(await one.line('BEGIN; SELECT 1;'), '1');
    const first = JSON.parse(await one.line(
        `SELECT row_to_json(r) FROM chat_post_one(${sq(a)}, 'u1', 'N', 'in A', NULL) r;`));
    assert.equal(first.seq, 1);
    const batch = psql(`SELECT string_agg(seq::text, ',' ORDER BY ord) FROM chat_post_batch(${sq(JSON.stringify([
        [a, 'u2', 'N', 'batch A', null], [b, 'u2', 'N', 'batch B', null]]))}::json)`);
    await waitFor(async () => (await psql(`SELECT count(*) FROM pg_stat_activity
        WHERE wait_event_type = 'Lock' AND query LIKE '%chat_post_batch%' AND query LIKE '%${a}%'`)) === '1',
    10000, 50, 'the batch waits for room A');
    const second = JSON.parse(await one.line(
        `SELECT row_to_json(r) FROM chat_post_one(${sq(b)}, 'u1', 'N', 'in B', NULL) r;`));
    assert.equal(second.seq, 2);
    assert.equal(await one.line('COMMIT; SELECT 1;'), '1');
    // The batch went on after the commit: A's and B's next numbers.
    assert.equal(await batch, '2,3');
    assert.equal(await psql(`SELECT string_agg(name || '=' || seq, ',' ORDER BY name) FROM rooms WHERE name IN (${sq(a)}, ${sq(b)})`),
        `${a}=2,${b}=3`);
});
