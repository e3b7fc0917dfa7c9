/**
 * Unit tests of the split core (activities/src/split-core.ts): the hash rule, its proportions, and the
 * properties the pipeline relies on: deterministic bytes, no key in two splits, counts that add up, and
 * records that never change split when the data set grows.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readShard, shardRecord, writeShard, type ShardContents } from '../../activities/src/shard';
import { assignSplit, splitFraction, splitShard, type SplitName, type SplitOptions } from '../../activities/src/split-core';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tempered-split-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let dirCounter = 0;

const options: SplitOptions = { validation: 0.1, test: 0.1, salt: 'tempered' };
const NAMES: SplitName[] = ['train', 'validation', 'test'];

/** Deterministic records whose tokens encode their key, so a moved or corrupted record is detectable. */
function contentsFor(keys: string[]): ShardContents {
  return {
    keys,
    records: keys.map((key) => {
      const digest = createHash('md5').update(key).digest();
      const tokens = Array.from({ length: 3 + (digest[0] % 6) }, (_, i) => digest[i % 16] + 256 * i);
      return { tokens, mask: tokens.map((_, i) => (i >= 2 ? 1 : 0)) };
    }),
    vocabSize: 4096,
    eosId: 0,
  };
}

async function split(keys: string[], opts: SplitOptions = options) {
  const dir = path.join(root, String(++dirCounter));
  fs.mkdirSync(dir);
  const input = path.join(dir, 'encoded.shard');
  await writeShard(input, contentsFor(keys));
  const out = { train: path.join(dir, 'train.shard'), validation: path.join(dir, 'validation.shard'), test: path.join(dir, 'test.shard') };
  const counts = await splitShard(input, out, opts);
  const shards = Object.fromEntries(await Promise.all(NAMES.map(async (n) => [n, await readShard(out[n])] as const)));
  return { counts, out, shards: shards as Record<SplitName, Awaited<ReturnType<typeof readShard>>> };
}

describe('splitFraction / assignSplit', () => {
  test('u is the top 53 bits of the first 8 bytes of sha256(salt NUL key), over 2^53', () => {
    const digest = createHash('sha256').update('tempered\u0000record-1').digest();
    const expected = Number(digest.readBigUInt64BE(0) >> 11n) / 2 ** 53;
    assert.equal(splitFraction('record-1', 'tempered'), expected);
    assert.ok(expected >= 0 && expected < 1);
  });

  test('thresholds: test below `test`, validation below `test + validation`, train above', () => {
    for (let i = 0; i < 2000; i++) {
      const key = `k${i}`;
      const u = splitFraction(key, options.salt);
      const expected = u < 0.1 ? 'test' : u < 0.2 ? 'validation' : 'train';
      assert.equal(assignSplit(key, options), expected);
    }
  });

  test('proportions follow the fractions', () => {
    const counts = { train: 0, validation: 0, test: 0 };
    const n = 20000;
    for (let i = 0; i < n; i++) counts[assignSplit(`key-${i}`, { validation: 0.15, test: 0.05, salt: 's' })]++;
    assert.ok(Math.abs(counts.test / n - 0.05) < 0.01, JSON.stringify(counts));
    assert.ok(Math.abs(counts.validation / n - 0.15) < 0.015, JSON.stringify(counts));
  });

  test('the salt reshuffles; the key alone decides otherwise', () => {
    const keys = Array.from({ length: 500 }, (_, i) => `k${i}`);
    const a = keys.map((k) => assignSplit(k, options));
    const b = keys.map((k) => assignSplit(k, { ...options, salt: 'other' }));
    assert.notDeepEqual(a, b);
    assert.deepEqual(a, keys.map((k) => assignSplit(k, { ...options })));
  });

  test('zero fractions put everything in train', () => {
    for (let i = 0; i < 200; i++) assert.equal(assignSplit(`k${i}`, { validation: 0, test: 0, salt: 'x' }), 'train');
  });
});

describe('splitShard', () => {
  const keys = Array.from({ length: 1000 }, (_, i) => `rec-${i.toString(16)}`);

  test('partitions every record exactly once, intact and in input order', async () => {
    const { counts, shards } = await split(keys);
    assert.equal(counts.train + counts.validation + counts.test, keys.length);
    assert.ok(counts.validation > 50 && counts.test > 50, JSON.stringify(counts));
    const original = contentsFor(keys);
    const seen = new Set<string>();
    for (const name of NAMES) {
      const shard = shards[name];
      assert.equal(shard.header.records, counts[name]);
      let last = -1;
      for (let i = 0; i < shard.header.records; i++) {
        const record = shardRecord(shard, i);
        assert.equal(assignSplit(record.key, options), name);
        assert.ok(!seen.has(record.key), `${record.key} in two splits`);
        seen.add(record.key);
        const index = keys.indexOf(record.key);
        assert.ok(index > last, 'input order kept');
        last = index;
        assert.deepEqual([...record.tokens], original.records[index].tokens);
        assert.deepEqual([...record.mask], original.records[index].mask);
      }
      assert.equal(shard.header.vocab_size, 4096);
    }
    assert.equal(seen.size, keys.length);
  });

  test('same input, byte-identical outputs', async () => {
    const a = await split(keys);
    const b = await split(keys);
    for (const name of NAMES) assert.ok(fs.readFileSync(a.out[name]).equals(fs.readFileSync(b.out[name])), name);
  });

  test('adding records never moves an existing record to another split', async () => {
    const before = await split(keys);
    // Grow the data set by half, new records interleaved and the old ones reordered.
    const grown = [...keys.slice(500), ...Array.from({ length: 500 }, (_, i) => `new-${i}`), ...keys.slice(0, 500)];
    const afterGrowth = await split(grown);
    const splitOf = (shards: typeof before.shards) => {
      const map = new Map<string, SplitName>();
      for (const name of NAMES) for (const key of shards[name].header.keys) map.set(key, name);
      return map;
    };
    const old = splitOf(before.shards);
    const now = splitOf(afterGrowth.shards);
    for (const key of keys) assert.equal(now.get(key), old.get(key), key);
    for (const name of NAMES) assert.ok(afterGrowth.counts[name] >= before.counts[name]);
  });

  test('records sharing a key always land in the same split', async () => {
    const withDuplicates = [...keys.slice(0, 200), ...keys.slice(0, 200)];
    const { shards } = await split(withDuplicates);
    const where = new Map<string, Set<SplitName>>();
    for (const name of NAMES) {
      for (const key of shards[name].header.keys) where.set(key, (where.get(key) ?? new Set()).add(name));
    }
    for (const [key, names] of where) assert.equal(names.size, 1, key);
  });

  test('an empty input gives three empty shards', async () => {
    const { counts, shards } = await split([]);
    assert.deepEqual(counts, { train: 0, validation: 0, test: 0 });
    for (const name of NAMES) assert.equal(shards[name].tokens.length, 0);
  });

  test('rejects impossible fractions', async () => {
    await assert.rejects(split(keys.slice(0, 3), { validation: 0.6, test: 0.5, salt: 'x' }), /invalid split fractions/);
    await assert.rejects(split(keys.slice(0, 3), { validation: -0.1, test: 0.1, salt: 'x' }), /invalid split fractions/);
  });
});
