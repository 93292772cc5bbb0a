// Values through POST /sql parse exactly as through a direct PostgreSQL connection: the same
// SELECT runs through the Neon driver (tenant a, app token) and through node-postgres on the
// tenant's own direct URL, and the parsed values must be deep-equal (both drivers parse
// PostgreSQL's text output by type OID with pg-types). Also parameters sent from JS values, and
// the field descriptions (type OID, size, modifier, table OID, column number).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { assertDbError, canon, fieldInfo, pgConnect, rejection, sqlFor, TEST_OPTS, tenants } from './lib.mjs';

const sql = sqlFor(tenants.a);
let direct;

before(async () => {
  direct = await pgConnect(tenants.a.direct_url);
});
after(async () => {
  await direct?.end();
});

/** Runs `text` with `params` both ways; returns {neon, pg} full results. */
async function both(text, params = []) {
  const viaNeon = await sql.query(text, params, { fullResults: true });
  const viaPg = await direct.query(text, params);
  return { neon: viaNeon, pg: viaPg };
}

// [label, SQL expression]: one column each, all in one SELECT.
const LITERALS = [
  ['int2 max', '32767::int2'],
  ['int2 min', '(-32768)::int2'],
  ['int4', '2147483647::int4'],
  ['int4 negative', '(-2147483648)::int4'],
  ['int8 beyond 2^53', '9223372036854775807::int8'],
  ['numeric', "'12345678901234567890.123456789'::numeric"],
  ['numeric scale', "1.50::numeric(10,4)"],
  ['numeric NaN', "'NaN'::numeric"],
  ['float4', '1.5::float4'],
  ['float4 0.1', '0.1::float4'],
  ['float4 NaN', "'NaN'::float4"],
  ['float4 Infinity', "'Infinity'::float4"],
  ['float4 -Infinity', "'-Infinity'::float4"],
  ['float8', '3.141592653589793::float8'],
  ['float8 tiny', '1e-300::float8'],
  ['float8 negative zero', "'-0'::float8"],
  ['float8 NaN', "'NaN'::float8"],
  ['float8 Infinity', "'Infinity'::float8"],
  ['float8 -Infinity', "'-Infinity'::float8"],
  ['bool true', 'true'],
  ['bool false', 'false'],
  ['text with quotes, backslash, newline, unicode', "E'it''s \"q\" \\\\ back\\nslash \u00e9\u00e8 \u2603 \ud83d\ude00'::text"],
  ['empty text', "''::text"],
  ['varchar', "'abc'::varchar(10)"],
  ['char padded', "'ab'::char(4)"],
  ['uuid', "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid"],
  ['json keeps its text', '\'{"b": [1, 2.5, {"c": null}], "a": "x"}\'::json'],
  ['jsonb', '\'{"b": [1, 2.5, {"c": null}], "a": "x", "u": "\\u00e9"}\'::jsonb'],
  ['jsonb scalar', "'\"just a string\"'::jsonb"],
  ['date', "'2024-02-29'::date"],
  ['date infinity', "'infinity'::date"],
  ['time', "'13:45:56.789'::time"],
  ['timetz', "'13:45:56.789+02:30'::timetz"],
  ['timestamp', "'2024-01-02 03:04:05.678901'::timestamp"],
  ['timestamp BC', "'0044-03-15 12:00:00 BC'::timestamp"],
  ['timestamptz', "'2024-01-02 03:04:05.678+05:30'::timestamptz"],
  ['timestamptz -infinity', "'-infinity'::timestamptz"],
  ['interval', "'1 year 2 mons 3 days 04:05:06.789'::interval"],
  ['interval negative', "'-1 day -02:03:00'::interval"],
  ['bytea', "'\\xdeadbeef00'::bytea"],
  ['bytea empty', "''::bytea"],
  ['int4[] with NULL', 'ARRAY[1, NULL, 3]::int4[]'],
  ['empty int4[]', "'{}'::int4[]"],
  ['int8[]', 'ARRAY[9007199254740993, -1]::int8[]'],
  ['text[] with quotes, commas, NULL, empty', "ARRAY['a', NULL, 'b \"q\"', 'c,d', '', 'NULL', 'back\\slash']::text[]"],
  ['bool[]', 'ARRAY[true, false, NULL]::bool[]'],
  ['float8[]', "ARRAY[1.5, 'NaN', '-Infinity', NULL]::float8[]"],
  ['numeric[]', 'ARRAY[1.10, NULL]::numeric[]'],
  ['date[]', "ARRAY['2024-01-01', NULL]::date[]"],
  ['timestamptz[]', "ARRAY['2024-01-01 00:00:00+00']::timestamptz[]"],
  ['uuid[]', "ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']::uuid[]"],
  ['jsonb[]', "ARRAY['{\"k\": 1}', 'null']::jsonb[]"],
  ['bytea[]', "ARRAY['\\x01ff'::bytea, NULL]"],
  ['interval[]', "ARRAY['1 day', '-1 mon']::interval[]"],
  ['2-D int4[] with NULL', 'ARRAY[[1, 2], [3, NULL]]::int4[]'],
  ['2-D text[] with NULL', "ARRAY[['a', 'b'], [NULL, 'd e']]::text[]"],
  ['array with lower bound', "'[0:1]={7,8}'::int4[]"],
  ['enum', "'happy'::mood"],
  ['enum[]', "ARRAY['sad', 'happy']::mood[]"],
  ['domain', '5::positive_int'],
  ['vector', "'[1,2,3]'::vector"],
  ['vector fractions', "'[0.5,-1.25,1e-3]'::vector"],
  ['vector(384) of 384 reals', "(array_fill(0.25::real, ARRAY[384]))::vector(384)"],
  ['NULL int', 'NULL::int'],
  ['NULL text', 'NULL::text'],
  ['NULL vector', 'NULL::vector'],
  ['untyped NULL', 'NULL'],
];

describe('a SELECT of literals parses the same through /sql and through a direct connection', () => {
  let result;
  before(async () => {
    const text = `select ${LITERALS.map(([, expr], i) => `${expr} as c${i}`).join(', ')}`;
    result = await both(text);
  });

  test('the row and field count match', TEST_OPTS, () => {
    assert.equal(result.neon.rows.length, 1);
    assert.equal(result.neon.fields.length, LITERALS.length);
    assert.equal(result.neon.rowCount, result.pg.rowCount);
    assert.equal(result.neon.command, result.pg.command);
  });

  LITERALS.forEach(([label, expr], i) => {
    test(`${label}: ${expr}`, TEST_OPTS, () => {
      const col = `c${i}`;
      const got = result.neon.rows[0][col];
      const want = result.pg.rows[0][col];
      assert.deepStrictEqual(canon(got), canon(want));
      // Same class of value, not only the same shape (a Date stays a Date, a Buffer a Buffer).
      assert.equal(got?.constructor?.name, want?.constructor?.name);
      assert.deepEqual(fieldInfo([result.neon.fields[i]]), fieldInfo([result.pg.fields[i]]), 'field description');
    });
  });
});

// [label, JS value, cast]: each sent as a parameter, returned as `$1::cast`.
const PARAMS = [
  ['integer', 42, 'int4'],
  ['negative float', -1.5, 'float8'],
  ['2^53 - 1 as int8', Number.MAX_SAFE_INTEGER, 'int8'],
  ['BigInt', 12345678901234567890n, 'numeric'],
  ['NaN', NaN, 'float8'],
  ['Infinity', Infinity, 'float8'],
  ['true', true, 'bool'],
  ['false', false, 'bool'],
  ['Date', new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678)), 'timestamptz'],
  ['Date as timestamp', new Date(Date.UTC(2001, 8, 9, 1, 46, 40, 1)), 'timestamp'],
  ['number array with null', [1, null, 3], 'int4[]'],
  ['nested array', [[1, 2], [3, 4]], 'int4[]'],
  ['string array with quotes, backslash and null', ['a"b', 'c\\d', null, '', 'NULL', 'x,y'], 'text[]'],
  ['object', { a: 1, b: [true, null], c: 'x"y', d: { e: 'é' } }, 'jsonb'],
  ['array of objects', [{ k: 1 }, { k: 'two' }], 'jsonb[]'],
  ['Buffer', Buffer.from([0, 1, 127, 128, 255]), 'bytea'],
  ['Uint8Array', new Uint8Array([222, 173, 190, 239]), 'bytea'],
  ['array of Buffers', [Buffer.from([1, 2]), Buffer.from([])], 'bytea[]'],
  ['null', null, 'text'],
  ['undefined (sent as NULL)', undefined, 'int4'],
  ['empty string', '', 'text'],
  ['unicode string', 'zürich ☃ 😀', 'text'],
  ['string with a NUL-free control character', 'tab\there', 'text'],
  ['enum label', 'sad', 'mood'],
  ['domain value', 7, 'positive_int'],
  ['vector text', '[1,2.5,-3]', 'vector'],
  ['uuid string', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'uuid'],
  ['interval string', '1 day 02:00:00', 'interval'],
  ['untyped number parameter', 1, 'text'],
];

describe('JS values sent as parameters come back as through a direct connection', () => {
  PARAMS.forEach(([label, value, cast]) => {
    test(`${label} as $1::${cast}`, TEST_OPTS, async () => {
      const { neon: viaNeon, pg: viaPg } = await both(`select $1::${cast} as v`, [value]);
      assert.deepStrictEqual(canon(viaNeon.rows[0].v), canon(viaPg.rows[0].v));
      assert.deepEqual(fieldInfo(viaNeon.fields), fieldInfo(viaPg.fields));
    });
  });

  test('many parameters of mixed types in one query', TEST_OPTS, async () => {
    const values = PARAMS.map(([, v]) => v);
    const text = `select ${PARAMS.map(([, , cast], i) => `$${i + 1}::${cast} as p${i}`).join(', ')}`;
    const { neon: viaNeon, pg: viaPg } = await both(text, values);
    assert.deepStrictEqual(canon(viaNeon.rows), canon(viaPg.rows));
  });
});

describe('field descriptions of a SELECT from real tables match a direct connection', () => {
  const queries = {
    'users joined with chat_threads': `
      select u.id, u.external_id, u.settings, u.created_at, t.id as thread_id, t.title, t.archived
      from users u join chat_threads t on t.user_id = u.id`,
    'chat_messages with enum role and vector(384) embedding': 'select * from chat_messages',
    'documents with jsonb metadata and vector(384) embedding': 'select * from documents',
    'type_samples with the enum and the domain': 'select * from type_samples',
  };
  for (const [label, text] of Object.entries(queries)) {
    test(label, TEST_OPTS, async () => {
      const { neon: viaNeon, pg: viaPg } = await both(text);
      const fields = fieldInfo(viaNeon.fields);
      assert.deepEqual(fields, fieldInfo(viaPg.fields));
      assert.ok(fields.every((f) => f.tableID > 0 && f.columnID > 0), 'columns of tables carry their table OID and column number');
    });
  }

  test('vector(384) reports its type modifier (384) like a direct connection', TEST_OPTS, async () => {
    const { neon: viaNeon } = await both('select embedding from documents limit 0');
    assert.equal(viaNeon.fields[0].dataTypeModifier, 384);
  });
});

describe('enum and domain values round-trip through a table', () => {
  test('insert with an enum label and a domain value, read back through both drivers', TEST_OPTS, async () => {
    const [row] = await sql`insert into type_samples (m, p) values (${'happy'}, ${3}) returning id, m, p`;
    assert.equal(row.m, 'happy');
    assert.equal(row.p, 3);
    const { neon: viaNeon, pg: viaPg } = await both('select id, m, p from type_samples where id = $1', [row.id]);
    assert.deepStrictEqual(viaNeon.rows, viaPg.rows);
    await sql`delete from type_samples where id = ${row.id}`;
  });

  test('a value outside the domain fails with 23514, an unknown enum label with 22P02', TEST_OPTS, async () => {
    assertDbError(await rejection(sql`insert into type_samples (m, p) values ('sad', ${0})`), '23514', 'positive_int = 0');
    assertDbError(await rejection(sql`insert into type_samples (m, p) values (${'angry'}, 1)`), '22P02', "mood 'angry'");
  });
});
