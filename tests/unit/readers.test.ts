/**
 * Unit tests of the source readers (activities/src/readers.ts) through the ingest core: format and compression
 * detection, gzip and zstd streams (whole, concatenated, truncated, not compressed at all), plain text per line
 * and per file, and Parquet files written by pyarrow (row groups, page compressions, list<struct> messages,
 * int64 ids, nulls, wrong types, a file that is not Parquet). Exact counts and row numbers throughout.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { constants as zlibConstants, gunzipSync, gzipSync } from 'node:zlib';
import { SourceError, contentKey, ingestFiles, type FieldMapping, type IngestReport, type IngestSource, type QuarantineEntry } from '../../activities/src/ingest-core';
import { compressionOf, formatOf } from '../../activities/src/readers';
import { filterPreferences } from '../../activities/src/rlhf';
import { MAX_LINE_CHARS, readLines, type DataRecord } from '../../activities/src/records';
import { SpecError, validateSpec } from '@tempered/spec';
import { parquetRowGroupOffsets, writeParquet, writeZstd } from '../fixtures';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tempered-readers-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let counter = 0;
const file = (name: string) => path.join(root, `${++counter}-${name}`);
function write(name: string, content: string | Buffer): string {
  const f = file(name);
  fs.writeFileSync(f, content);
  return f;
}
const fields: FieldMapping = { prompt: 'prompt', response: 'response', key: 'id' };

function readJsonl<T>(f: string): T[] {
  return fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as T);
}

/** Ingests one source, its format and compression detected from its name unless given. */
async function ingest(f: string, extra: Partial<IngestSource> = {}): Promise<{ report: IngestReport; dataset: DataRecord[]; quarantine: QuarantineEntry[] }> {
  const n = ++counter;
  const out = { datasetPath: path.join(root, `${n}-dataset.jsonl`), quarantinePath: path.join(root, `${n}-quarantine.jsonl`) };
  const source: IngestSource = { path: f, label: path.basename(f), format: formatOf(f), compression: compressionOf(f), encoding: 'utf-8', ...extra };
  const report = await ingestFiles([source], fields, out);
  const dataset = readJsonl<DataRecord>(out.datasetPath);
  const quarantine = readJsonl<QuarantineEntry>(out.quarantinePath);
  assert.equal(report.kept + report.quarantined, report.input);
  assert.equal(dataset.length, report.kept);
  assert.equal(quarantine.length, report.quarantined);
  return { report, dataset, quarantine };
}

const turns = (n: number, from = 0) => Array.from({ length: n }, (_, i) => ({ id: `t${from + i}`, prompt: `question ${from + i}`, response: `answer ${from + i}` }));
const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
/** Rows whose text does not compress to nothing (digests), so that a truncated stream really loses data. */
const noisyTurns = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `n${i}`, prompt: createHash('sha256').update(String(i)).digest('hex'), response: `answer ${i}` }));

describe('format and compression detection', () => {
  test('by extension, looking past a compression extension, ignoring a query string', () => {
    assert.equal(formatOf('a/train.jsonl.gz'), 'jsonl');
    assert.equal(formatOf('s3://b/rows.csv.zst?versionId=2'), 'csv');
    assert.equal(formatOf('corpus.TXT'), 'text');
    assert.equal(formatOf('x.ndjson.zstd'), 'jsonl');
    assert.equal(formatOf('s3://b/part-0.parquet'), 'parquet');
    assert.equal(compressionOf('a/train.jsonl.gz'), 'gzip');
    assert.equal(compressionOf('rows.csv.zst'), 'zstd');
    assert.equal(compressionOf('rows.csv'), 'none');
    assert.equal(compressionOf('rows.parquet'), 'none');
  });
  test('the spec wins over the extension', () => {
    assert.equal(formatOf('dump.bin', 'parquet'), 'parquet');
    assert.equal(compressionOf('train.jsonl', 'gzip'), 'gzip');
    assert.equal(compressionOf('train.jsonl.gz', 'none'), 'none');
  });
});

describe("the spec's source fields", () => {
  const spec = (source: Record<string, unknown>) => ({ apiVersion: 'tempered/v1', name: 'x', data: { sources: [{ uri: 'a.jsonl', ...source }] }, rlhf: { method: 'none' } });
  test('format, compression and documents take their values; each is optional', () => {
    const s = validateSpec(spec({ uri: 'corpus.txt.zst', format: 'text', compression: 'zstd', documents: 'file' }));
    assert.deepEqual(s.data.sources[0], { uri: 'corpus.txt.zst', format: 'text', compression: 'zstd', documents: 'file', encoding: 'utf-8' });
    assert.deepEqual(validateSpec(spec({})).data.sources[0], { uri: 'a.jsonl', encoding: 'utf-8' });
    assert.equal(validateSpec(spec({ format: 'parquet' })).data.sources[0].format, 'parquet');
  });
  test('a bad value is an issue at its field, naming the values allowed', () => {
    for (const [field, value] of [['format', 'xlsx'], ['compression', 'lz4'], ['documents', 'paragraph']] as const) {
      assert.throws(
        () => validateSpec(spec({ [field]: value })),
        (err: unknown) => err instanceof SpecError && err.issues.length === 1 && err.issues[0].path === `data.sources.0.${field}` && /expected one of/i.test(err.issues[0].message),
        field,
      );
    }
  });
});

describe('gzip and zstd', () => {
  test('gzip JSONL streams through, and so do several gzip members one after another (as `cat a.gz b.gz`)', async () => {
    const { report, dataset } = await ingest(write('two-members.jsonl.gz', Buffer.concat([gzipSync(jsonl(turns(3))), gzipSync(jsonl(turns(2, 3)))])));
    assert.deepEqual({ input: report.input, kept: report.kept }, { input: 5, kept: 5 });
    assert.deepEqual(dataset.map((r) => r.key), ['t0', 't1', 't2', 't3', 't4']);
  });

  test('zstd JSONL (written by pyarrow) streams through', async () => {
    const f = file('rows.jsonl.zst');
    writeZstd(f, jsonl(turns(1000)));
    const { report, dataset } = await ingest(f);
    assert.deepEqual({ input: report.input, kept: report.kept }, { input: 1000, kept: 1000 });
    assert.equal(dataset[999].key, 't999');
  });

  test('gzip and zstd CSV, a quoted newline inside a cell included', async () => {
    const csv = 'id,prompt,response\r\na,"two\nlines",x\r\nb,one,y\r\n';
    const gz = await ingest(write('rows.csv.gz', gzipSync(csv)));
    const zf = file('rows.csv.zst');
    writeZstd(zf, csv);
    const zst = await ingest(zf);
    for (const { report, dataset } of [gz, zst]) {
      assert.deepEqual({ input: report.input, kept: report.kept }, { input: 2, kept: 2 });
      assert.deepEqual(dataset, [
        { key: 'a', prompt: 'two\nlines', response: 'x' },
        { key: 'b', prompt: 'one', response: 'y' },
      ]);
    }
  });

  test('a truncated gzip keeps what came before the damage; the rest is one quarantine entry', async () => {
    const whole = gzipSync(jsonl(noisyTurns(2000)));
    const cut = whole.subarray(0, Math.floor(whole.length / 2));
    // The oracle: what zlib can inflate of the cut stream, and so how many whole lines it holds.
    const readable = gunzipSync(cut, { finishFlush: zlibConstants.Z_SYNC_FLUSH }).toString('utf8');
    const wholeLines = readable.split('\n').length - 1;
    assert.ok(wholeLines > 0 && wholeLines < 2000);
    const { report, dataset, quarantine } = await ingest(write('cut.jsonl.gz', cut));
    assert.deepEqual({ input: report.input, kept: report.kept, quarantined: report.quarantined }, { input: wholeLines + 1, kept: wholeLines, quarantined: 1 });
    assert.deepEqual(report.reasons, { 'unreadable source': 1 });
    // Every line up to the damage was read in order; the entry names the first line that was not.
    assert.deepEqual(dataset.map((r) => r.key), Array.from({ length: dataset.length }, (_, i) => `n${i}`));
    assert.equal(quarantine[0].line, dataset.length + 1);
    assert.match(quarantine[0].reason, /^unreadable source: not a valid gzip stream \(unexpected end of file\); the rest of the file from here was not read$/);
  });

  test('a file named .gz or .zst that is not compressed is one unreadable-source entry, not a failed stage', async () => {
    const gz = await ingest(write('plain.jsonl.gz', jsonl(turns(2))));
    assert.deepEqual(gz.quarantine.map((q) => [q.line, q.reason.split(':')[0]]), [[1, 'unreadable source']]);
    assert.match(gz.quarantine[0].reason, /not a valid gzip stream \(incorrect header check\)/);
    const zst = await ingest(write('plain.jsonl.zst', jsonl(turns(2))));
    assert.deepEqual(zst.quarantine.map((q) => [q.line, q.reason.split(':')[0]]), [[1, 'unreadable source']]);
    assert.match(zst.quarantine[0].reason, /not a valid zstd stream/);
  });

  test('a truncated zstd stream keeps the blocks before the damage', async () => {
    const f = file('big.jsonl.zst');
    // Past zstd's 128 KiB block, so that the first blocks decode before the cut.
    writeZstd(f, jsonl(noisyTurns(6000)));
    const whole = fs.readFileSync(f);
    const { report, dataset, quarantine } = await ingest(write('cut.jsonl.zst', whole.subarray(0, Math.floor(whole.length * 0.75))));
    assert.ok(dataset.length > 0 && dataset.length < 6000, `kept ${dataset.length}`);
    assert.deepEqual(report.reasons, { 'unreadable source': 1 });
    assert.equal(quarantine[0].line, dataset.length + 1);
  });

  test('an empty gzip file and an empty zstd-named file are empty sources', async () => {
    const gz = await ingest(write('empty.jsonl.gz', gzipSync('')));
    assert.deepEqual({ input: gz.report.input }, { input: 0 });
    const zst = await ingest(write('empty.jsonl.zst', ''));
    assert.deepEqual({ input: zst.report.input }, { input: 0 });
  });

  test('preference pairs read from zstd JSONL; a pair with a lone surrogate is dropped, as the trainer could not encode it', async () => {
    const f = file('prefs.jsonl.zst');
    const pairs = [
      '{"prompt": "p1", "chosen": "good", "rejected": "bad"}',
      String.raw`{"prompt": "p2", "chosen": "good \ud800", "rejected": "bad"}`,
      '{"prompt": "p3", "chosen": "good", "rejected": "worse"}',
    ];
    writeZstd(f, pairs.join('\n') + '\n');
    const out = file('prefs-out.jsonl');
    const spec = validateSpec({ apiVersion: 'tempered/v1', name: 'x', data: { sources: [{ uri: 'a.jsonl' }] }, rlhf: { preferences: { uri: 'prefs.jsonl.zst' } } });
    assert.deepEqual(await filterPreferences(f, 'zstd', out, spec), { kept: 2, dropped: 1 });
    assert.deepEqual(readJsonl<{ prompt: string }>(out).map((p) => p.prompt), ['p1', 'p3']);
  });

  test('a missing compressed file rejects (a read error is not quarantined)', async () => {
    await assert.rejects(ingest(path.join(root, 'nope.jsonl.gz')), /ENOENT/);
    await assert.rejects(ingest(path.join(root, 'nope.jsonl.zst')), /ENOENT/);
  });
});

describe('plain text', () => {
  const content = 'first document\r\n\r\n   \nsecond one\nfirst document\nbad \xff byte\nlast, no newline';

  test('one document per non-blank line by default: CRLF or LF, keys from the text, bad bytes quarantined', async () => {
    const f = write('corpus.txt', Buffer.from(content, 'latin1'));
    const { report, dataset, quarantine } = await ingest(f);
    assert.deepEqual({ input: report.input, kept: report.kept, quarantined: report.quarantined }, { input: 5, kept: 4, quarantined: 1 });
    assert.deepEqual(report.formats, { text: 4 });
    assert.deepEqual(
      dataset.map((r) => ('text' in r ? r.text : '')),
      ['first document', 'second one', 'first document', 'last, no newline'],
    );
    assert.equal(dataset[0].key, contentKey({ text: 'first document' }));
    assert.equal(dataset[2].key, dataset[0].key, 'the same text, the same key (clean removes the copy)');
    assert.deepEqual(quarantine.map((q) => [q.line, q.reason]), [[6, 'undecodable bytes: not valid utf-8']]);
  });

  test('documents: file makes the whole file one document, its line breaks kept', async () => {
    const f = write('essay.txt', 'Title\r\n\r\nA paragraph.\nAnother.\n');
    const { report, dataset } = await ingest(f, { documents: 'file' });
    assert.deepEqual({ input: report.input, kept: report.kept }, { input: 1, kept: 1 });
    assert.deepEqual(dataset, [{ key: contentKey({ text: 'Title\n\nA paragraph.\nAnother.' }), text: 'Title\n\nA paragraph.\nAnother.' }]);
    const blank = await ingest(write('blank.txt', '\n  \n'), { documents: 'file' });
    assert.equal(blank.report.input, 0);
  });

  test('gzip-compressed text, per line', async () => {
    const { report } = await ingest(write('corpus.txt.gz', gzipSync('a\nb\nc\n')));
    assert.deepEqual({ input: report.input, kept: report.kept }, { input: 3, kept: 3 });
  });
});

describe('lines past the limit', () => {
  test('readLines yields the head of a line over the limit, across read chunks, and goes on with the next line', async () => {
    const f = write('long.txt', `a\n${'x'.repeat(200_000)}\r\nb\n${'c'.repeat(1000)}\n${'y'.repeat(5000)}`);
    const lines = [];
    for await (const l of readLines(f, 'utf-8', 1000)) lines.push({ ...l, text: l.text.slice(0, 3), length: l.text.length });
    assert.deepEqual(lines, [
      { text: 'a', line: 1, length: 1 },
      { text: 'xxx', line: 2, length: 1000, tooLong: true },
      { text: 'b', line: 3, length: 1 },
      { text: 'ccc', line: 4, length: 1000 },
      { text: 'yyy', line: 5, length: 1000, tooLong: true },
    ]);
  });

  test('ingest quarantines a JSONL line, a text line and a text file over 64 Mi characters', async () => {
    const huge = 'w'.repeat(MAX_LINE_CHARS + 10);
    const jl = await ingest(write('huge.jsonl', `${jsonl(turns(1))}{"prompt": "${huge}", "response": "r"}\n${jsonl(turns(1, 1))}`));
    assert.deepEqual({ input: jl.report.input, kept: jl.report.kept }, { input: 3, kept: 2 });
    assert.deepEqual(jl.quarantine.map((q) => [q.line, q.reason, q.raw.length]), [[2, 'too long: longer than 64 Mi characters; the rest of it was read past', 500]]);
    const txt = await ingest(write('huge.txt', `short\n${huge}\nafter\n`));
    assert.deepEqual({ input: txt.report.input, kept: txt.report.kept, reasons: txt.report.reasons }, { input: 3, kept: 2, reasons: { 'too long': 1 } });
    const doc = await ingest(write('huge-doc.txt', `short\n${huge}\nafter\n`), { documents: 'file' });
    assert.deepEqual({ input: doc.report.input, reasons: doc.report.reasons }, { input: 1, reasons: { 'too long': 1 } });
  });
});

describe('Parquet (files written by pyarrow)', () => {
  test('every record format from columns, several row groups in order, row numbers across them', async () => {
    const rows = [
      { id: 1, prompt: 'p1', response: 'r1' },
      { messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] },
      { text: 'plain text' },
      { id: 4, prompt: 'p4' }, // no response: a null cell
      { instruction: 'do', output: 'done' },
      { id: 6, prompt: 'p6', response: 'r6' },
      { prompt: 'surrogate-free but empty', response: '' },
    ];
    const f = file('rows.parquet');
    writeParquet(f, rows, { rowGroupSize: 3 });
    const { report, dataset, quarantine } = await ingest(f);
    assert.deepEqual({ input: report.input, kept: report.kept, quarantined: report.quarantined }, { input: 7, kept: 6, quarantined: 1 });
    assert.deepEqual(report.formats, { 'prompt-response': 3, messages: 1, text: 1, alpaca: 1 });
    // int64 ids (bigints in JavaScript) are keys like any number.
    assert.deepEqual(dataset[0], { key: '1', prompt: 'p1', response: 'r1' });
    assert.deepEqual((dataset[1] as { messages: unknown }).messages, rows[1].messages);
    assert.deepEqual(dataset.map((r) => r.key).filter((k) => /^\d+$/.test(k)), ['1', '6']);
    assert.deepEqual(quarantine.map((q) => [q.line, q.reason.split(':')[0]]), [[4, 'missing field']]);
    assert.match(quarantine[0].raw, /"id":"4","prompt":"p4","response":null/);
  });

  test('zstd- and gzip-compressed pages read the same as snappy', async () => {
    const rows = turns(50);
    const results = [];
    for (const compression of ['snappy', 'zstd', 'gzip', 'none'] as const) {
      const f = file(`${compression}.parquet`);
      writeParquet(f, rows, { compression, rowGroupSize: 16 });
      results.push((await ingest(f)).dataset);
    }
    assert.equal(results[0].length, 50);
    for (const r of results.slice(1)) assert.deepEqual(r, results[0]);
  });

  test('a column of the wrong type is a quarantined row, not a failed file', async () => {
    const f = file('types.parquet');
    writeParquet(f, [
      { id: 'a', prompt: 'fine', response: 'ok', n: 1 },
      { id: 'b', prompt: 'fine', response: 'ok', n: 2 },
    ]);
    const { report } = await ingest(f, { records: 'text' });
    assert.deepEqual(report.reasons, { 'missing field': 2 });
  });

  test('a file that is not Parquet is a SourceError naming it; a damaged row group is quarantined with the rest', async () => {
    await assert.rejects(ingest(write('fake.parquet', jsonl(turns(3)))), (err: Error) => err instanceof SourceError && /fake\.parquet: not a Parquet file/.test(err.message));
    await assert.rejects(ingest(write('empty.parquet', '')), SourceError);

    const f = file('groups.parquet');
    writeParquet(f, noisyTurns(300), { rowGroupSize: 100, compression: 'none' });
    const bytes = fs.readFileSync(f);
    // Garbage over the page header of the second row group's first column; the footer stays readable.
    const offsets = parquetRowGroupOffsets(f);
    bytes.fill(0xff, offsets[1], offsets[1] + 16);
    const { report, dataset, quarantine } = await ingest(write('damaged.parquet', bytes));
    assert.deepEqual({ input: report.input, kept: report.kept, quarantined: report.quarantined }, { input: 101, kept: 100, quarantined: 1 });
    assert.equal(dataset[99].key, 'n99');
    assert.equal(quarantine[0].line, 101);
    assert.match(quarantine[0].reason, /^unreadable source: a row group of rows 101–200 cannot be decoded/);
  });

  test('records: text on a plain-text source is fine; any other stated format is a SourceError', async () => {
    const f = write('c.txt', 'a\n');
    assert.equal((await ingest(f, { records: 'text' })).report.kept, 1);
    await assert.rejects(ingest(f, { records: 'messages' }), (err: Error) => err instanceof SourceError && /plain-text source holds only text/.test(err.message));
  });
});
