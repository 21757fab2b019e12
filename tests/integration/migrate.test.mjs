/**
 * chatctl migrate from an empty schema, on a database whose default
 * collation is linguistic (ICU en-US), as most production clusters'
 * are: every migration applies, a second run has nothing to do, the
 * write path's keys compare as bytes (their indexes never go through the
 * collation library, and the lock order is the store's strcmp order),
 * and the write functions work there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, env, psql, runChatctl, sq } from '../lib/harness.mjs';

const dsn = env.pgIcuDsn;
const q = (sql) => psql(sql, dsn);

const migrate = () => runChatctl(['migrate', '--dir', path.join(ROOT, 'sql')], { CHAT_PG_DSN: dsn }, 60000);

test('migrate: from scratch on an ICU en-US database; keys in byte order; the write path works', async () => {
    // The database is what this test is about: linguistic order, where
    // 'a' < 'B'. In byte order 'B' < 'a'.
    assert.equal(await q("SELECT datlocprovider::text || ' ' || daticulocale FROM pg_database WHERE datname = current_database()"),
        'i en-US');
    assert.equal(await q("SELECT string_agg(x, ',' ORDER BY x) FROM unnest(ARRAY['b', 'B', 'a', 'A']) x"), 'a,A,b,B');

    await q('DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public');
    const files = fs.readdirSync(path.join(ROOT, 'sql')).filter((f) => /^[0-9].*\.sql$/.test(f)).sort();
    let r = await migrate();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), files.map((f) => `applied ${f}`));
    r = await migrate();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), `database is up to date (${files.length} migrations)`);

    // Every key column of the write path, and only those, in byte order.
    const cols = await q(`SELECT table_name || '.' || column_name || ' ' || coalesce(collation_name, 'default')
                            FROM information_schema.columns
                           WHERE table_schema = 'public' AND table_name IN ('rooms', 'messages', 'room_events')
                             AND data_type = 'text' ORDER BY 1`);
    assert.deepEqual(cols.split('\n'), [
        'messages.body default', 'messages.ref C', 'messages.room C', 'messages.user_id C',
        'messages.user_name default', 'room_events.payload default', 'room_events.room C', 'rooms.name C',
    ]);
    // Rooms are locked in byte order, new ones included: the order the
    // store sorts a batch in (strcmp) before its chat_post_one calls.
    assert.equal(await q("SELECT array_to_string(names, ',') FROM chat_lock_rooms(ARRAY['b', 'B', 'a', 'A'])"), 'A,B,a,b');
    assert.equal(await q("SELECT string_agg(name, ',' ORDER BY name) FROM rooms"), 'A,B,a,b');

    // The write functions: rooms that differ only in case are different
    // rooms, each numbered from 1, and a repeated ref finds its original
    // through the unique index.
    const batch = JSON.stringify([['b', 'u1', 'U', 'one', 'r1'], ['B', 'u1', 'U', 'two', 'r1'], ['a', 'u1', 'U', 'three', 'r1']]);
    const rows = (await q(`SELECT r.seq || ' ' || r.duplicate FROM chat_post_batch(${sq(batch)}::json) r ORDER BY r.ord`)).split('\n');
    assert.deepEqual(rows, ['1 false', '1 false', '1 false']);
    const again = await q(`SELECT r.seq || ' ' || r.duplicate || ' ' || (r.id = m.id)
                             FROM chat_post_one('B', 'u1', 'U', 'two', 'r1') r
                             JOIN messages m ON m.room = 'B' AND m.ref = 'r1'`);
    assert.equal(again, '1 true true');
    const fresh = await q("SELECT seq || ' ' || duplicate FROM chat_post_one('a', 'u1', 'U', 'four', 'r2')");
    assert.equal(fresh, '2 false');
    const plan = await q(`SET enable_seqscan = off;
                          EXPLAIN (COSTS OFF) SELECT id FROM messages WHERE room = 'B' AND user_id = 'u1' AND ref = 'r1'`);
    assert.match(plan, /Index.* using messages_room_user_ref/, plan);
    await q('DROP SCHEMA public CASCADE; CREATE SCHEMA public');
});

test('migrate: more migration files than it can hold is a failure, not "up to date"', async () => {
    const dir = fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'chatd-mig-'));
    try {
        for (let i = 0; i <= 1000; i++) fs.writeFileSync(path.join(dir, `${String(i).padStart(4, '0')}_x.sql`), 'SELECT 1;\n');
        const r = await runChatctl(['migrate', '--dir', dir], { CHAT_PG_DSN: dsn }, 60000);
        assert.equal(r.code, 1, r.stdout + r.stderr);
        assert.match(r.stderr, /too many migration files/);
        assert.equal(r.stderr.trim().split('\n').length, 1, 'a one-line reason');
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});
