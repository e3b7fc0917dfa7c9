/**
 * Unit tests of the shard format (activities/src/shard.ts): byte layout per services/trainer/CONTRACT.md,
 * round trips, validation of broken files, subset copies, and (when python3 is on PATH) that an independent
 * Python reader sees the same records.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  concatShards,
  readShard,
  readShardHeader,
  shardRecord,
  writeShard,
  writeShardSubset,
  type ShardContents,
} from '../../activities/src/shard';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tempered-shard-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let fileCounter = 0;
const tmp = (name: string) => path.join(root, `${++fileCounter}-${name}`);

const sample: ShardContents = {
  keys: ['a1', 'ключ-2', 'empty', 'big'],
  records: [
    { tokens: [5, 6, 7], mask: [0, 0, 1] },
    { tokens: [1, 2], mask: [0, 1] },
    { tokens: [], mask: [] },
    // A token above 65535 proves the tokens are 4 bytes wide.
    { tokens: [70000, 0, 99999], mask: [1, 1, 1] },
  ],
  vocabSize: 100000,
  eosId: 0,
};

/** The expected bytes, built by hand from the contract rather than with the code under test. */
function expectedBytes(contents: ShardContents): Buffer {
  const offsets = [0];
  for (const r of contents.records) offsets.push(offsets[offsets.length - 1] + r.tokens.length);
  const header = Buffer.from(
    JSON.stringify({ version: 1, records: contents.records.length, keys: contents.keys, offsets, vocab_size: contents.vocabSize, eos_id: contents.eosId }),
  );
  const length = Buffer.alloc(4);
  length.writeUInt32LE(header.length);
  const tokens = contents.records.flatMap((r) => Array.from(r.tokens));
  const tokenBytes = Buffer.alloc(tokens.length * 4);
  tokens.forEach((t, i) => tokenBytes.writeInt32LE(t, i * 4));
  const mask = Buffer.from(contents.records.flatMap((r) => Array.from(r.mask)));
  return Buffer.concat([Buffer.from('TMPSHRD1', 'ascii'), length, header, tokenBytes, mask]);
}

describe('writeShard / readShard', () => {
  test('writes exactly the contract layout', async () => {
    const file = tmp('sample.shard');
    await writeShard(file, sample);
    const bytes = fs.readFileSync(file);
    assert.deepEqual(bytes, expectedBytes(sample));
    // Spot-check the layout independently of the helper: magic, little-endian length, first token.
    assert.equal(bytes.toString('latin1', 0, 8), 'TMPSHRD1');
    const h = bytes.readUInt32LE(8);
    assert.equal(JSON.parse(bytes.toString('utf8', 12, 12 + h)).offsets.join(','), '0,3,5,5,8');
    assert.deepEqual([...bytes.subarray(12 + h, 12 + h + 4)], [5, 0, 0, 0]);
    assert.equal(bytes.readInt32LE(12 + h + 5 * 4), 70000);
    assert.deepEqual([...bytes.subarray(bytes.length - 8)], [0, 0, 1, 0, 1, 1, 1, 1]);
  });

  test('round-trips keys, tokens and loss mask', async () => {
    const file = tmp('round.shard');
    await writeShard(file, sample);
    const shard = await readShard(file);
    assert.deepEqual(shard.header, { version: 1, records: 4, keys: sample.keys, offsets: [0, 3, 5, 5, 8], vocab_size: 100000, eos_id: 0 });
    assert.ok(shard.tokens instanceof Int32Array);
    assert.ok(shard.lossMask instanceof Uint8Array);
    assert.deepEqual([...shard.tokens], [5, 6, 7, 1, 2, 70000, 0, 99999]);
    assert.deepEqual([...shard.lossMask], [0, 0, 1, 0, 1, 1, 1, 1]);
    sample.records.forEach((r, i) => {
      const got = shardRecord(shard, i);
      assert.equal(got.key, sample.keys[i]);
      assert.deepEqual([...got.tokens], Array.from(r.tokens));
      assert.deepEqual([...got.mask], Array.from(r.mask));
    });
  });

  test('an empty shard is valid', async () => {
    const file = tmp('empty.shard');
    await writeShard(file, { keys: [], records: [], vocabSize: 10, eosId: 1 });
    const shard = await readShard(file);
    assert.equal(shard.header.records, 0);
    assert.deepEqual(shard.header.offsets, [0]);
    assert.equal(shard.tokens.length, 0);
  });

  test('refuses inconsistent contents', async () => {
    const base = { keys: ['k'], vocabSize: 10, eosId: 0 };
    await assert.rejects(writeShard(tmp('x'), { ...base, records: [{ tokens: [1, 2], mask: [1] }] }), /2 tokens but 1 mask/);
    await assert.rejects(writeShard(tmp('x'), { ...base, records: [{ tokens: [10], mask: [1] }] }), /token 10 outside \[0, 10\)/);
    await assert.rejects(writeShard(tmp('x'), { ...base, records: [{ tokens: [1], mask: [2] }] }), /mask value 2/);
    await assert.rejects(writeShard(tmp('x'), { ...base, keys: [], records: [{ tokens: [1], mask: [1] }] }), /0 keys for 1 records/);
    await assert.rejects(writeShard(tmp('x'), { ...base, eosId: 10, records: [] as never[], keys: [] }), /eosId 10 outside/);
  });

  test('rejects damaged files with a clear reason', async () => {
    const good = expectedBytes(sample);
    const cases: Array<[string, Buffer, RegExp]> = [
      ['magic', Buffer.concat([Buffer.from('TMPSHRD2'), good.subarray(8)]), /bad magic/],
      ['truncated data', good.subarray(0, good.length - 1), /header implies/],
      ['trailing bytes', Buffer.concat([good, Buffer.from([0])]), /header implies/],
      ['truncated header', good.subarray(0, 20), /truncated shard header/],
      ['tiny', Buffer.from('TMP'), /unexpected end/],
    ];
    for (const [name, bytes, error] of cases) {
      const file = tmp(`${name}.shard`);
      fs.writeFileSync(file, bytes);
      await assert.rejects(readShard(file), error, name);
    }
    const badHeader = (header: object) => {
      const json = Buffer.from(JSON.stringify(header));
      const length = Buffer.alloc(4);
      length.writeUInt32LE(json.length);
      const file = tmp('bad-header.shard');
      fs.writeFileSync(file, Buffer.concat([Buffer.from('TMPSHRD1'), length, json]));
      return readShardHeader(file);
    };
    await assert.rejects(badHeader({ version: 2, records: 0, keys: [], offsets: [0], vocab_size: 1, eos_id: 0 }), /unsupported version/);
    await assert.rejects(badHeader({ version: 1, records: 1, keys: [], offsets: [0, 0], vocab_size: 1, eos_id: 0 }), /keys must be 1 strings/);
    await assert.rejects(badHeader({ version: 1, records: 2, keys: ['a', 'b'], offsets: [0, 2, 1], vocab_size: 1, eos_id: 0 }), /offsets\[2\]/);
  });
});

describe('writeShardSubset', () => {
  test('copies the chosen records in order, byte-identical to writing them directly', async () => {
    const source = tmp('source.shard');
    await writeShard(source, sample);
    const subset = tmp('subset.shard');
    const header = await writeShardSubset(source, subset, [1, 3]);
    assert.deepEqual(header.keys, ['ключ-2', 'big']);
    const direct = { keys: ['ключ-2', 'big'], records: [sample.records[1], sample.records[3]], vocabSize: 100000, eosId: 0 };
    assert.deepEqual(fs.readFileSync(subset), expectedBytes(direct));
  });

  test('handles subsets larger than its copy buffer', async () => {
    // ~3 MB of tokens: several 1 MiB blocks, with records straddling block edges.
    const n = 3000;
    const records = Array.from({ length: n }, (_, i) => {
      const tokens = Array.from({ length: 200 + (i % 57) }, (_, j) => (i * 7919 + j) % 50000);
      return { tokens, mask: tokens.map((t) => t % 2) };
    });
    const keys = records.map((_, i) => `k${i}`);
    const source = tmp('large.shard');
    await writeShard(source, { keys, records, vocabSize: 50000, eosId: 1 });
    const chosen = keys.map((_, i) => i).filter((i) => i % 3 !== 1);
    const subset = tmp('large-subset.shard');
    await writeShardSubset(source, subset, chosen);
    const expected = { keys: chosen.map((i) => keys[i]), records: chosen.map((i) => records[i]), vocabSize: 50000, eosId: 1 };
    assert.ok(fs.readFileSync(subset).equals(expectedBytes(expected)));
  });

  test('insists on ascending, in-range indices', async () => {
    const source = tmp('source.shard');
    await writeShard(source, sample);
    await assert.rejects(writeShardSubset(source, tmp('x'), [2, 1]), /strictly ascending/);
    await assert.rejects(writeShardSubset(source, tmp('x'), [4]), /out of range/);
  });
});

describe('concatShards', () => {
  test('joins shards in order into the bytes of the shard of all their records, across copy blocks', async () => {
    const n = 2500;
    const records = Array.from({ length: n }, (_, i) => {
      const tokens = Array.from({ length: 150 + (i % 61) }, (_, j) => (i * 104729 + j) % 70000);
      return { tokens, mask: tokens.map((t) => t % 2) };
    });
    const keys = records.map((_, i) => `r${i}`);
    const expected = expectedBytes({ keys, records, vocabSize: 70000, eosId: 2 });
    // Uneven parts, an empty one among them.
    const cuts = [0, 1, 1, 900, 2499, n];
    const parts = [];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const part = tmp(`part-${i}.shard`);
      await writeShard(part, { keys: keys.slice(cuts[i], cuts[i + 1]), records: records.slice(cuts[i], cuts[i + 1]), vocabSize: 70000, eosId: 2 });
      parts.push(part);
    }
    const joined = tmp('joined.shard');
    const header = await concatShards(parts, joined);
    assert.equal(header.records, n);
    assert.ok(fs.readFileSync(joined).equals(expected));
  });

  test('joins shards of more records than a call can take arguments (a part of 150,000)', async () => {
    const n = 160_000;
    const keys = Array.from({ length: n }, (_, i) => `k${i}`);
    const records = keys.map((_, i) => ({ tokens: [i % 7], mask: [1] }));
    const parts = [];
    for (const [i, [from, to]] of [[0, 150_000], [150_000, n]].entries()) {
      const part = tmp(`many-${i}.shard`);
      await writeShard(part, { keys: keys.slice(from, to), records: records.slice(from, to), vocabSize: 7, eosId: 0 });
      parts.push(part);
    }
    const joined = tmp('many.shard');
    await concatShards(parts, joined);
    assert.ok(fs.readFileSync(joined).equals(expectedBytes({ keys, records, vocabSize: 7, eosId: 0 })));
  });

  test('refuses shards of different vocabularies', async () => {
    const a = tmp('a.shard');
    const b = tmp('b.shard');
    await writeShard(a, sample);
    await writeShard(b, { ...sample, eosId: 1 });
    await assert.rejects(concatShards([a, b], tmp('x')), /vocabulary 100000\/eos 1/);
  });
});

const python = spawnSync('python3', ['--version']).status === 0;

test('a Python reader following the contract reads what TypeScript wrote, header bytes as Python writes them', { skip: !python && 'python3 not found' }, async () => {
  const file = tmp('for-python.shard');
  // Keys with quotes, backslashes, control characters and non-ASCII test the JSON escaping on both sides.
  await writeShard(file, { ...sample, keys: ['a"b\\c', 'tab\there\u0001', 'ключ/日本', '🙂'] });
  const script = `
import json, struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"TMPSHRD1"
(h,) = struct.unpack_from("<I", data, 8)
header = json.loads(data[12:12 + h].decode("utf-8"))
total = header["offsets"][-1]
tokens = struct.unpack_from("<%di" % total, data, 12 + h)
mask = list(data[12 + h + 4 * total:])
assert len(mask) == total
o = header["offsets"]
# tempered_trainer/shard.py serialises its header this way: the TypeScript header must be the same bytes.
assert json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8") == data[12:12 + h]
print(json.dumps([[header["keys"][i], list(tokens[o[i]:o[i + 1]]), mask[o[i]:o[i + 1]]] for i in range(header["records"])]))
`;
  const run = spawnSync('python3', ['-c', script, file], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(
    JSON.parse(run.stdout),
    sample.records.map((r, i) => [['a"b\\c', 'tab\there\u0001', 'ключ/日本', '🙂'][i], Array.from(r.tokens), Array.from(r.mask)]),
  );
});
