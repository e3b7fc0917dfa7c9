/**
 * Unit tests of the ingest core (activities/src/ingest-core.ts) and of the demo data and spec it is meant to
 * read: quarantine reasons, row numbers and counts, Shift_JIS decoding, record formats (prompt/response,
 * prompt/completion, alpaca, chat messages, text; stated or detected), keys, and kept + quarantined = input.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import iconv from 'iconv-lite';
import { parseSpec } from '@tempered/spec';
import {
  SourceError,
  contentKey,
  formatOf,
  ingestFiles,
  recordKey,
  type FieldMapping,
  type IngestReport,
  type IngestSource,
  type QuarantineEntry,
} from '../../activities/src/ingest-core';
import type { ChatMessage, DataRecord, TurnRecord } from '../../activities/src/records';
import { assignSplit } from '../../activities/src/split-core';
import { DEMO_SPEC_PATH, generateDemoData } from '../../examples/src/index';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tempered-ingest-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let fileCounter = 0;

function writeFile(name: string, content: string | Buffer): string {
  const file = path.join(root, `${++fileCounter}-${name}`);
  fs.writeFileSync(file, content);
  return file;
}

function readJsonl<T>(file: string): T[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as T);
}

const defaultFields: FieldMapping = { prompt: 'prompt', response: 'response' };

/** Ingests the sources; `R` is the shape the test expects of the records (turns unless it says otherwise). */
async function ingest<R extends DataRecord = TurnRecord>(
  sources: Array<Partial<IngestSource> & { path: string }>,
  fields: FieldMapping = defaultFields,
): Promise<{ report: IngestReport; dataset: R[]; quarantine: QuarantineEntry[] }> {
  const n = ++fileCounter;
  const out = { datasetPath: path.join(root, `${n}-dataset.jsonl`), quarantinePath: path.join(root, `${n}-quarantine.jsonl`) };
  const full = sources.map((s) => ({
    label: path.basename(s.path),
    format: formatOf(s.path),
    encoding: 'utf-8' as const,
    ...s,
  }));
  const report = await ingestFiles(full, fields, out);
  const dataset = readJsonl<R>(out.datasetPath);
  const quarantine = readJsonl<QuarantineEntry>(out.quarantinePath);
  // The invariant every test relies on, checked against the files as well as the counts.
  assert.equal(report.kept + report.quarantined, report.input);
  assert.equal(dataset.length, report.kept);
  assert.equal(quarantine.length, report.quarantined);
  for (const s of report.bySource) assert.equal(s.kept + s.quarantined, s.input);
  return { report, dataset, quarantine };
}

describe('formatOf', () => {
  test('infers the format from the extension of a path or URI', () => {
    assert.equal(formatOf('data/train.jsonl'), 'jsonl');
    assert.equal(formatOf('s3://bucket/dir/rows.JSON'), 'jsonl');
    assert.equal(formatOf('/tmp/extra.csv'), 'csv');
    assert.equal(formatOf('https://host/x.csv?versionId=3#frag'), 'csv');
  });
  test('an explicit format wins', () => {
    assert.equal(formatOf('data/rows.txt', 'csv'), 'csv');
    assert.equal(formatOf('data/rows.csv', 'jsonl'), 'jsonl');
  });
  test('an unknown extension is a clear error', () => {
    assert.throws(() => formatOf('s3://b/data.xlsx'), /cannot tell the format of "s3:\/\/b\/data.xlsx".*format: jsonl/);
    assert.throws(() => formatOf('noextension'), /\.jsonl, \.json, \.csv, \.txt or \.parquet/);
    assert.throws(() => formatOf('rows.gz'), /cannot tell the format of "rows.gz"/);
  });
});

test('recordKey is the first 16 hex digits of sha256(prompt NUL response)', () => {
  const expected = createHash('sha256').update('reverse 1 2\u00002 1').digest('hex').slice(0, 16);
  assert.equal(recordKey('reverse 1 2', '2 1'), expected);
  assert.match(expected, /^[0-9a-f]{16}$/);
  assert.notEqual(recordKey('ab', 'c'), recordKey('a', 'bc'));
});

describe('JSONL sources', () => {
  test('keeps good lines and quarantines each kind of bad line with its line number and reason', async () => {
    const lines = [
      '{"prompt": "reverse 1 2", "response": "2 1"}', // 1 kept
      '', // 2 blank: not an input
      '{"prompt": "reverse 3 4", "response": "4 3"', // 3 truncated
      '["reverse 1 2", "2 1"]', // 4 array
      '"just a string"', // 5 not an object
      '{"prompt": "reverse 5 6"}', // 6 no response
      '{"prompt": 7, "response": "7"}', // 7 prompt not a string
      '   ', // 8 blank
      '{"prompt": "", "response": "x"}', // 9 kept: emptiness is the clean stage's call
      'null', // 10
    ];
    const file = writeFile('mixed.jsonl', lines.join('\n')); // no trailing newline on purpose
    const { report, dataset, quarantine } = await ingest([{ path: file, label: 'src-a' }]);

    assert.deepEqual(
      { input: report.input, kept: report.kept, quarantined: report.quarantined },
      { input: 8, kept: 2, quarantined: 6 },
    );
    assert.deepEqual(report.reasons, { 'invalid JSON': 1, 'not a JSON object': 3, 'missing field': 2 });
    assert.deepEqual(
      quarantine.map((q) => [q.line, q.reason.split(':')[0]]),
      [
        [3, 'invalid JSON'],
        [4, 'not a JSON object'],
        [5, 'not a JSON object'],
        [6, 'missing field'],
        [7, 'missing field'],
        [10, 'not a JSON object'],
      ],
    );
    assert.ok(quarantine.every((q) => q.source === 'src-a'));
    assert.equal(quarantine[0].raw, lines[2]);
    assert.match(quarantine[1].reason, /an array/);
    assert.match(quarantine[3].reason, /"response"/);
    assert.match(quarantine[4].reason, /"prompt"/);
    assert.deepEqual(dataset, [
      { key: recordKey('reverse 1 2', '2 1'), prompt: 'reverse 1 2', response: '2 1' },
      { key: recordKey('', 'x'), prompt: '', response: 'x' },
    ]);
  });

  test('maps fields and takes the key from the key field when present and non-empty', async () => {
    const file = writeFile(
      'mapped.jsonl',
      [
        '{"q": "a", "a": "b", "id": "r-1"}',
        '{"q": "c", "a": "d", "id": 42}',
        '{"q": "e", "a": "f", "id": "  "}',
        '{"q": "g", "a": "h"}',
        '{"prompt": "i", "response": "j"}',
      ].join('\r\n') + '\r\n',
    );
    const { dataset, quarantine } = await ingest([{ path: file }], { prompt: 'q', response: 'a', key: 'id' });
    assert.deepEqual(dataset, [
      { key: 'r-1', prompt: 'a', response: 'b' },
      { key: '42', prompt: 'c', response: 'd' },
      { key: recordKey('e', 'f'), prompt: 'e', response: 'f' },
      { key: recordKey('g', 'h'), prompt: 'g', response: 'h' },
    ]);
    assert.equal(quarantine.length, 1);
    assert.equal(quarantine[0].line, 5);
    assert.match(quarantine[0].reason, /^missing field: "q"/);
  });

  test('truncates the raw text of a quarantined line to 500 characters', async () => {
    const long = `{"prompt": "${'x'.repeat(2000)}"`;
    const { quarantine } = await ingest([{ path: writeFile('long.jsonl', long + '\n') }]);
    assert.equal(quarantine[0].raw.length, 500);
    assert.equal(quarantine[0].raw, long.slice(0, 500));
  });

  test('decodes Shift_JIS JSONL and quarantines lines with undecodable bytes', async () => {
    const good = iconv.encode('{"prompt": "逆順にして ３ ９", "response": "9 3"}\n', 'shift_jis');
    const bad = Buffer.concat([Buffer.from('{"prompt": "a'), Buffer.from([0xff]), Buffer.from('", "response": "b"}\n')]);
    const { dataset, quarantine } = await ingest([{ path: writeFile('sjis.jsonl', Buffer.concat([good, bad, good])), encoding: 'shift_jis' }]);
    assert.equal(dataset.length, 2);
    assert.equal(dataset[0].prompt, '逆順にして ３ ９');
    assert.deepEqual(
      quarantine.map((q) => [q.line, q.reason]),
      [[2, 'undecodable bytes: not valid shift_jis']],
    );
  });

  test('a missing file rejects instead of hanging', async () => {
    await assert.rejects(ingest([{ path: path.join(root, 'nope.jsonl') }]), /ENOENT/);
  });

  // Regression: a JSON escape can write a lone UTF-16 surrogate, which JavaScript holds but nothing else can
  // encode; such a record passed ingest and clean, then failed the tokenize stage (and so the run) every attempt.
  test('a text or key holding a lone UTF-16 surrogate is quarantined as invalid Unicode; a proper pair is kept', async () => {
    const lines = [
      String.raw`{"prompt": "hello \ud800 there", "response": "ok"}`, // 1 lone high surrogate
      String.raw`{"prompt": "fine", "response": "tail \udc00"}`, // 2 lone low surrogate
      String.raw`{"prompt": "swapped", "response": "\ude00\ud83d"}`, // 3 a pair in the wrong order
      String.raw`{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x\udbff"}]}`, // 4
      String.raw`{"text": "\ud800"}`, // 5
      String.raw`{"id": "k\ud800", "prompt": "a", "response": "b"}`, // 6 the key
      String.raw`{"prompt": "smile \ud83d\ude00", "response": "ok"}`, // 7 kept: a surrogate pair is one character
    ];
    const { report, dataset, quarantine } = await ingest<DataRecord>([{ path: writeFile('surrogates.jsonl', lines.join('\n')) }], { ...defaultFields, key: 'id' });
    assert.deepEqual({ input: report.input, kept: report.kept, quarantined: report.quarantined }, { input: 7, kept: 1, quarantined: 6 });
    assert.deepEqual(report.reasons, { 'invalid Unicode': 6 });
    assert.deepEqual(
      quarantine.map((q) => [q.line, q.reason]),
      [
        [1, String.raw`invalid Unicode: "prompt" holds a lone UTF-16 surrogate (\ud800) at position 6, which has no UTF-8 form`],
        [2, String.raw`invalid Unicode: "response" holds a lone UTF-16 surrogate (\udc00) at position 5, which has no UTF-8 form`],
        [3, String.raw`invalid Unicode: "response" holds a lone UTF-16 surrogate (\ude00) at position 0, which has no UTF-8 form`],
        [4, String.raw`invalid Unicode: "messages.1.content" holds a lone UTF-16 surrogate (\udbff) at position 1, which has no UTF-8 form`],
        [5, String.raw`invalid Unicode: "text" holds a lone UTF-16 surrogate (\ud800) at position 0, which has no UTF-8 form`],
        [6, String.raw`invalid Unicode: "key" holds a lone UTF-16 surrogate (\ud800) at position 1, which has no UTF-8 form`],
      ],
    );
    assert.equal((dataset[0] as TurnRecord).prompt, 'smile \u{1F600}');
    // What is written has a UTF-8 form: it round-trips through a strict decoder.
    assert.doesNotThrow(() => new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(JSON.stringify(dataset))));
  });

  test('a value nested deeper than the stack is quarantined, not a crash of the stage', async () => {
    const deep = '['.repeat(200_000) + ']'.repeat(200_000);
    const lines = [
      `{"messages": [{"role": ${deep}, "content": "x"}]}`, // the reason shows the role: JSON.stringify of it overflows
      `{"prompt": ${deep}, "response": "b"}`,
      `{"a": ${deep}}`,
      '{"prompt": "a", "response": "b"}',
    ];
    const { report, quarantine } = await ingest<DataRecord>([{ path: writeFile('deep.jsonl', lines.join('\n')) }]);
    assert.deepEqual({ input: report.input, kept: report.kept }, { input: 4, kept: 1 });
    assert.deepEqual(report.reasons, { 'bad messages': 1, 'missing field': 1, 'unknown record format': 1 });
    assert.match(quarantine[0].reason, /^bad messages: message 1 has role \[…deeply nested…\]; expected system, user or assistant$/);
    assert.equal(quarantine[0].raw.length, 500);
  });

  test('a raw truncated to 500 characters never ends in half a surrogate pair', async () => {
    const line = `{"prompt": "${'x'.repeat(487)}\u{1F600}${'y'.repeat(100)}"`; // the emoji's halves at 499 and 500
    const { quarantine } = await ingest([{ path: writeFile('clip.jsonl', line) }]);
    assert.equal(quarantine[0].raw, line.slice(0, 499));
  });
});

describe('CSV sources', () => {
  test('quarantines rows with the wrong number of columns and carries on', async () => {
    const csv = [
      'id,prompt,response', // row 1
      '1,reverse 1 2,2 1', // row 2
      '2,reverse 3 4,4 3,surplus', // row 3: too many
      '3,reverse 5 6', // row 4: too few
      '', // blank line: not an input
      '4,"reverse 7, 8","8, 7"', // row 6: quoted commas are fine
      '5,say "hi",ih', // row 7: a stray quote is read literally
      '6,reverse 9 0,0 9', // row 8
    ].join('\n');
    const { report, dataset, quarantine } = await ingest([{ path: writeFile('cols.csv', csv) }], { ...defaultFields, key: 'id' });
    assert.deepEqual(report.reasons, { 'wrong number of columns': 2 });
    assert.deepEqual(
      quarantine.map((q) => [q.line, q.reason, q.raw]),
      [
        [3, 'wrong number of columns: expected 3, got 4', '2,reverse 3 4,4 3,surplus'],
        [4, 'wrong number of columns: expected 3, got 2', '3,reverse 5 6'],
      ],
    );
    assert.deepEqual(dataset, [
      { key: '1', prompt: 'reverse 1 2', response: '2 1' },
      { key: '4', prompt: 'reverse 7, 8', response: '8, 7' },
      { key: '5', prompt: 'say "hi"', response: 'ih' },
      { key: '6', prompt: 'reverse 9 0', response: '0 9' },
    ]);
    assert.equal(report.input, 6);
  });

  test('a quote left open swallows the rest of the file into one quarantined record, keeping what came before', async () => {
    const csv = 'prompt,response\r\na,b\r\n"c,d\r\ne,f\r\n';
    const { report, dataset, quarantine } = await ingest([{ path: writeFile('open-quote.csv', csv) }]);
    assert.deepEqual(dataset.map((r) => r.prompt), ['a']);
    assert.equal(quarantine.length, 1);
    assert.equal(quarantine[0].line, 3);
    assert.match(quarantine[0].reason, /^unparseable CSV: /);
    assert.equal(quarantine[0].raw, '"c,d\r\ne,f');
    assert.deepEqual(report.reasons, { 'unparseable CSV': 1 });
  });

  test('decodes Shift_JIS, including characters split across read chunks', async () => {
    // ~300 KB of two-byte characters: stream chunks (64 KiB) are bound to cut some of them in half.
    const rows = Array.from({ length: 3000 }, (_, i) => `${i},日本語の指示 ${'あいうえお'.repeat(8)} ${i},ｒｅｖｅｒｓｅ ${i}`);
    const file = writeFile('big-sjis.csv', iconv.encode(['id,prompt,response', ...rows].join('\r\n') + '\r\n', 'shift_jis'));
    const { report, dataset } = await ingest([{ path: file, encoding: 'shift_jis' }]);
    assert.equal(report.quarantined, 0);
    assert.equal(dataset.length, 3000);
    dataset.forEach((r, i) => {
      assert.equal(r.prompt, `日本語の指示 ${'あいうえお'.repeat(8)} ${i}`);
      assert.equal(r.response, `ｒｅｖｅｒｓｅ ${i}`);
    });
  });

  test('a Shift_JIS row with invalid bytes is quarantined as undecodable; its neighbours are kept', async () => {
    const file = writeFile(
      'bad-bytes.csv',
      Buffer.concat([
        iconv.encode('prompt,response\r\n全角 ３,3\r\nx ', 'shift_jis'),
        Buffer.from([0xff]),
        iconv.encode(' y,z\r\n半角ｶﾅ,k\r\n', 'shift_jis'),
      ]),
    );
    const { dataset, quarantine } = await ingest([{ path: file, encoding: 'shift_jis', label: 'extra.csv' }]);
    assert.deepEqual(dataset.map((r) => r.prompt), ['全角 ３', '半角ｶﾅ']);
    assert.deepEqual(quarantine, [{ source: 'extra.csv', line: 3, reason: 'undecodable bytes: not valid shift_jis', raw: 'x \uFFFD y,z' }]);
  });

  test('the same bytes read as UTF-8 are a different (wrong) text: the encoding matters', async () => {
    const file = writeFile('sjis-as-utf8.csv', iconv.encode('prompt,response\r\n全角,x\r\n', 'shift_jis'));
    const { quarantine } = await ingest([{ path: file, encoding: 'utf-8' }]);
    assert.equal(quarantine.length, 1);
    assert.match(quarantine[0].reason, /^undecodable bytes/);
  });

  test('a header without the prompt column is an error naming the columns', async () => {
    const file = writeFile('no-prompt.csv', 'question,response\nq,r\n');
    await assert.rejects(ingest([{ path: file }]), /no "prompt" column \(columns: question, response\)/);
  });

  test('a missing file rejects instead of hanging', async () => {
    await assert.rejects(ingest([{ path: path.join(root, 'nope.csv') }]), /ENOENT/);
  });

  test('CRLF and LF line endings mixed in one file are each a row end; a quoted newline is not', async () => {
    const csv = 'prompt,response\r\n"two\nlines",a\nshort\r\nb,c\n';
    const { dataset, quarantine } = await ingest([{ path: writeFile('mixed-endings.csv', csv) }]);
    assert.deepEqual(dataset.map((r) => [r.prompt, r.response]), [['two\nlines', 'a'], ['b', 'c']]);
    assert.deepEqual(quarantine.map((q) => [q.line, q.reason]), [[3, 'wrong number of columns: expected 2, got 1']]);
  });

  test('strips a UTF-8 byte-order mark from the header', async () => {
    const file = writeFile('bom.csv', '\uFEFFprompt,response\np,r\n');
    const { dataset } = await ingest([{ path: file }]);
    assert.deepEqual(dataset.map((r) => [r.prompt, r.response]), [['p', 'r']]);
  });
});

test('several sources: output in source order, counts per source', async () => {
  const a = writeFile('a.jsonl', '{"prompt":"a","response":"1"}\n[]\n');
  const b = writeFile('b.csv', 'prompt,response\nb,2\nc,3,4\nd,5\n');
  const { report, dataset } = await ingest([
    { path: a, label: 'A' },
    { path: b, label: 'B' },
  ]);
  assert.deepEqual(dataset.map((r) => r.prompt), ['a', 'b', 'd']);
  assert.deepEqual(
    report.bySource.map(({ label, input, kept, quarantined }) => ({ label, input, kept, quarantined })),
    [
      { label: 'A', input: 2, kept: 1, quarantined: 1 },
      { label: 'B', input: 3, kept: 2, quarantined: 1 },
    ],
  );
  assert.deepEqual(report.reasons, { 'not a JSON object': 1, 'wrong number of columns': 1 });
});

test('ingest is deterministic: same inputs, same bytes', async () => {
  const file = writeFile('det.jsonl', '{"prompt":"a","response":"1"}\n{"prompt":"b"}\n');
  const outs = [1, 2].map((i) => ({ datasetPath: path.join(root, `det-${i}.jsonl`), quarantinePath: path.join(root, `det-q-${i}.jsonl`) }));
  for (const out of outs) await ingestFiles([{ path: file, label: 'x', format: 'jsonl', encoding: 'utf-8' }], defaultFields, out);
  assert.deepEqual(fs.readFileSync(outs[0].datasetPath), fs.readFileSync(outs[1].datasetPath));
  assert.deepEqual(fs.readFileSync(outs[0].quarantinePath), fs.readFileSync(outs[1].quarantinePath));
});

describe('demo data', () => {
  test('ingests with exactly the planted defects quarantined', async () => {
    const dir = path.join(root, 'demo');
    const summary = generateDemoData(dir, { records: 300, seed: 7 });
    const { report, quarantine } = await ingest([
      { path: summary.train.path, label: 'data/train.jsonl' },
      { path: summary.extra.path, label: 'data/extra.csv', encoding: 'shift_jis' },
    ]);
    assert.equal(report.input, summary.totals.inputRows);
    assert.equal(report.kept, summary.totals.wellFormed);
    assert.equal(report.quarantined, summary.totals.malformed);
    assert.deepEqual(report.reasons, {
      'invalid JSON': 1,
      'not a JSON object': 1,
      'missing field': 1,
      'wrong number of columns': 1,
      'undecodable bytes': 1,
    });
    assert.deepEqual(
      quarantine.filter((q) => q.source === 'data/train.jsonl').map((q) => q.line),
      summary.train.malformedLines,
    );
    const csvLines = quarantine.filter((q) => q.source === 'data/extra.csv').map((q) => q.line).sort((x, y) => x - y);
    assert.deepEqual(csvLines, [...summary.extra.wrongColumnRows, ...summary.extra.invalidByteRows].sort((x, y) => x - y));
  });

  test('is byte-for-byte reproducible from its seed, and changes with it', () => {
    const read = (dir: string) => ['train.jsonl', 'extra.csv', 'preferences.jsonl'].map((f) => fs.readFileSync(path.join(dir, f)));
    generateDemoData(path.join(root, 'seed-a'), { records: 100, seed: 3 });
    generateDemoData(path.join(root, 'seed-b'), { records: 100, seed: 3 });
    generateDemoData(path.join(root, 'seed-c'), { records: 100, seed: 4 });
    assert.deepEqual(read(path.join(root, 'seed-a')), read(path.join(root, 'seed-b')));
    assert.notDeepEqual(read(path.join(root, 'seed-a'))[0], read(path.join(root, 'seed-c'))[0]);
  });

  test('preference pairs: chosen is the exact reversal, rejected is a different wrong answer', () => {
    const summary = generateDemoData(path.join(root, 'prefs'), { records: 2000, seed: 11 });
    const pairs = readJsonl<{ prompt: string; chosen: string; rejected: string }>(summary.preferences.path);
    assert.equal(pairs.length, summary.preferences.pairs);
    assert.equal(pairs.length, 300);
    const kinds = { unreversed: 0, swapped: 0 };
    for (const { prompt, chosen, rejected } of pairs) {
      const digits = prompt.replace(/^reverse /, '').split(' ');
      assert.ok(digits.length >= 3 && digits.length <= 5 && digits.every((d) => /^\d$/.test(d)), prompt);
      assert.equal(chosen, [...digits].reverse().join(' '));
      assert.notEqual(rejected, chosen);
      if (rejected === digits.join(' ')) kinds.unreversed++;
      else {
        // Exactly one neighbouring pair of the reversal differs, swapped.
        const c = chosen.split(' ');
        const r = rejected.split(' ');
        const diff = c.flatMap((d, i) => (d !== r[i] ? [i] : []));
        assert.equal(diff.length, 2, `${chosen} vs ${rejected}`);
        assert.equal(diff[1], diff[0] + 1);
        assert.equal(c[diff[0]], r[diff[1]]);
        kinds.swapped++;
      }
    }
    assert.ok(kinds.unreversed > 50 && kinds.swapped > 50, JSON.stringify(kinds));
  });

  test('the demo spec is valid and keeps model and train settings at the defaults', () => {
    const spec = parseSpec(fs.readFileSync(DEMO_SPEC_PATH, 'utf8'));
    assert.equal(spec.name, 'demo-reverse');
    assert.deepEqual(
      spec.data.sources.map((s) => [s.uri, s.encoding]),
      [
        ['data/train.jsonl', 'utf-8'],
        ['data/extra.csv', 'shift_jis'],
      ],
    );
    assert.equal(spec.rlhf.method, 'dpo');
    assert.equal(spec.rlhf.preferences?.uri, 'data/preferences.jsonl');
    assert.equal(spec.test.minExactMatch, 0.3);
    assert.equal(spec.deploy.approvalTimeout, '24h');
    const defaults = parseSpec('apiVersion: tempered/v1\nname: x\ndata: {sources: [{uri: a.jsonl}]}\nrlhf: {method: none}\n');
    assert.deepEqual(spec.model, defaults.model);
    assert.deepEqual(spec.train, defaults.train);
    // The sources resolve against the spec's directory to where the generator writes by default.
    for (const source of [...spec.data.sources, spec.rlhf.preferences!]) {
      assert.equal(path.dirname(path.resolve(path.dirname(DEMO_SPEC_PATH), source.uri)), path.join(path.dirname(DEMO_SPEC_PATH), 'data'));
    }
  });
});

/** JSONL text of the given rows, one per line. */
const jsonl = (...rows: unknown[]) => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';
/** The reason kinds of a quarantine, line by line. */
const reasonsByLine = (quarantine: QuarantineEntry[]) => quarantine.map((q) => [q.line, q.reason]);

describe('record keys', () => {
  test('a turn keeps the prompt NUL response digest, and so does the same example as a conversation; others hash their whole content', () => {
    assert.equal(contentKey({ prompt: 'reverse 1 2', response: '2 1' }), recordKey('reverse 1 2', '2 1'));
    const chat = [
      { role: 'system' as const, content: 's' },
      { role: 'user' as const, content: 'u1' },
      { role: 'assistant' as const, content: 'a1' },
      { role: 'user' as const, content: 'u2' },
      { role: 'assistant' as const, content: 'a2' },
    ];
    const key = contentKey({ messages: chat });
    assert.equal(key, createHash('sha256').update(JSON.stringify({ messages: chat })).digest('hex').slice(0, 16));
    assert.equal(contentKey({ text: 'abc' }), createHash('sha256').update('{"text":"abc"}').digest('hex').slice(0, 16));
    // Every message counts, the first as much as the last, and so does every role.
    const others = new Set(
      chat.flatMap((_, i) => [
        contentKey({ messages: chat.map((m, j) => (j === i ? { ...m, content: `${m.content}!` } : m)) }),
        ...(i === 0 ? [contentKey({ messages: chat.map((m, j) => (j === 0 ? { ...m, role: 'user' as const } : m)) })] : []),
      ]),
    );
    assert.equal(others.size, chat.length + 1);
    assert.ok(!others.has(key));
    // One user turn and its answer is the turn {prompt, response} (the trainer renders both alike): one key,
    // so one split. Anything more, or another shape, is another record.
    assert.equal(contentKey({ messages: [{ role: 'user', content: 'p' }, { role: 'assistant', content: 'r' }] }), recordKey('p', 'r'));
    assert.notEqual(contentKey({ messages: [{ role: 'system', content: 's' }, { role: 'user', content: 'p' }, { role: 'assistant', content: 'r' }] }), recordKey('p', 'r'));
    assert.notEqual(contentKey({ text: 'p\u0000r' }), recordKey('p', 'r'));
  });
});

describe('record formats from JSONL', () => {
  test('prompt-completion rows become turns', async () => {
    const file = writeFile('pc.jsonl', jsonl({ prompt: 'reverse 1 2', completion: '2 1' }, { prompt: 'p', completion: '', extra: 1 }));
    const { report, dataset, quarantine } = await ingest([{ path: file }]);
    assert.deepEqual(dataset, [
      { key: recordKey('reverse 1 2', '2 1'), prompt: 'reverse 1 2', response: '2 1' },
      { key: recordKey('p', ''), prompt: 'p', response: '' },
    ]);
    assert.equal(quarantine.length, 0);
    assert.deepEqual(report.formats, { 'prompt-completion': 2 });
  });

  test('alpaca rows become turns: the instruction, then a blank line and the input when there is one', async () => {
    const file = writeFile(
      'alpaca.jsonl',
      jsonl(
        { instruction: 'Reverse the digits.', input: '1 2 3', output: '3 2 1' },
        { instruction: 'Name a colour.', input: '', output: 'blue' },
        { instruction: 'Name a fruit.', output: 'apple' },
        { instruction: 'Name a tree.', input: null, output: 'oak' },
        { instruction: 'Say hi.', input: '  ', output: 'hi' },
        { instruction: 'Count.', input: 3, output: '1 2 3' },
      ),
    );
    const { report, dataset, quarantine } = await ingest([{ path: file }]);
    assert.deepEqual(
      dataset.map((r) => [r.prompt, r.response]),
      [
        ['Reverse the digits.\n\n1 2 3', '3 2 1'],
        ['Name a colour.', 'blue'],
        ['Name a fruit.', 'apple'],
        ['Name a tree.', 'oak'],
        ['Say hi.', 'hi'],
      ],
    );
    assert.equal(dataset[0].key, recordKey('Reverse the digits.\n\n1 2 3', '3 2 1'));
    assert.deepEqual(reasonsByLine(quarantine), [[6, 'missing field: "input" is a number, not a string (records: alpaca)']]);
    assert.deepEqual(report.formats, { alpaca: 5 });
  });

  test('text rows become plain-text records', async () => {
    const file = writeFile('text.jsonl', jsonl({ text: 'Once upon a time.' }, { text: 'Line one\nline two', source: 'wiki' }));
    const { dataset } = await ingest<DataRecord>([{ path: file }]);
    assert.deepEqual(dataset, [
      { key: contentKey({ text: 'Once upon a time.' }), text: 'Once upon a time.' },
      { key: contentKey({ text: 'Line one\nline two' }), text: 'Line one\nline two' },
    ]);
  });

  test('chat messages become conversations: multi-turn, a system message first, text parts joined, other fields dropped', async () => {
    const multi = [
      { role: 'system', content: 'You reverse digits.' },
      { role: 'user', content: 'reverse 1 2' },
      { role: 'assistant', content: '2 1' },
      { role: 'user', content: 'reverse 3 4' },
      { role: 'assistant', content: '4 3', weight: 1 },
    ];
    const parts = [
      { role: 'user', content: [{ type: 'text', text: 'reverse' }, { type: 'text', text: '5 6' }], name: 'ann' },
      { role: 'assistant', content: '6 5' },
    ];
    const file = writeFile('chat.jsonl', jsonl({ messages: multi, id: 'c-1' }, { messages: parts }));
    const { report, dataset, quarantine } = await ingest<DataRecord>([{ path: file }], { ...defaultFields, key: 'id' });
    const joined = [
      { role: 'user', content: 'reverse\n5 6' },
      { role: 'assistant', content: '6 5' },
    ] as const;
    assert.deepEqual(dataset, [
      { key: 'c-1', messages: multi.map(({ role, content }) => ({ role, content })) },
      { key: contentKey({ messages: [...joined] }), messages: joined },
    ]);
    assert.equal(quarantine.length, 0);
    assert.deepEqual(report.formats, { messages: 2 });
  });

  test('malformed messages are quarantined, each with its reason', async () => {
    const u = { role: 'user', content: 'q' };
    const a = { role: 'assistant', content: 'r' };
    const rows = [
      { messages: [u, a] }, // 1 kept
      { messages: [] }, // 2
      { messages: 'user: q' }, // 3
      { messages: [u, a, { role: 'tool', content: '42' }, a] }, // 4
      { messages: [u, { role: 'assistant', content: 42 }] }, // 5
      { messages: [u, { role: 'assistant', content: null, tool_calls: [{ id: 't' }] }] }, // 6
      { messages: [u, a, u] }, // 7 no answer at the end
      { messages: [u, { role: 'system', content: 's' }, a] }, // 8 system not first
      { messages: [{ role: 'system', content: 's' }, a] }, // 9 no user
      { messages: [u, 'r'] }, // 10
      { messages: [{ content: 'q' }, a] }, // 11
      { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }, a] }, // 12
      { messages: [{ role: 'user', content: ['q'] }, a] }, // 13
      { messages: [u, { role: 'assistant' }] }, // 14
      { messages: [{ role: 'User', content: 'q' }, a] }, // 15 roles are lower case
      { messages: [{ role: 'system', content: 's' }, a, u, a] }, // 16 opens with an answer, not a question
    ];
    const { report, dataset, quarantine } = await ingest<DataRecord>([{ path: writeFile('bad-chat.jsonl', jsonl(...rows)) }]);
    assert.equal(dataset.length, 1);
    assert.deepEqual(report.reasons, { 'bad messages': 15 });
    assert.deepEqual(reasonsByLine(quarantine), [
      [2, 'bad messages: the list is empty'],
      [3, 'bad messages: "messages" is a string, not a list'],
      [4, 'bad messages: message 3 has role "tool"; expected system, user or assistant'],
      [5, 'bad messages: message 2: content is a number, not a string'],
      [6, 'bad messages: message 2: content is null, not a string'],
      [7, "bad messages: the last message is the user's; a conversation ends with the assistant's answer"],
      [8, 'bad messages: message 2 is a system message; only the first message may be one'],
      [9, 'bad messages: no user message'],
      [10, 'bad messages: message 2 is a string, not an object'],
      [11, 'bad messages: message 1 has no role; expected system, user or assistant'],
      [12, 'bad messages: message 1: a content part has type "image_url"; only text parts are read'],
      [13, 'bad messages: message 1: a content part is not a {type: "text", text} part; only text parts are read'],
      [14, 'bad messages: message 2: content is absent, not a string'],
      [15, 'bad messages: message 1 has role "User"; expected system, user or assistant'],
      [16, "bad messages: the first message after any system message is the assistant's; a conversation starts with the user"],
    ]);
    assert.equal(quarantine[2].raw, JSON.stringify(rows[3]));
  });

  test('auto detects each row: messages, prompt + completion, instruction + output, the prompt/response fields, text', async () => {
    const chat: ChatMessage[] = [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: 'r' },
    ];
    const rows = [
      { messages: chat, prompt: 'ignored', response: 'ignored' }, // 1 messages first
      { prompt: 'p', completion: 'c', response: 'ignored' }, // 2 prompt-completion before prompt-response
      { instruction: 'i', output: 'o', text: 'ignored' }, // 3 alpaca before text
      { prompt: 'p', response: 'r', text: 'ignored' }, // 4 prompt-response before text
      { text: 't' }, // 5
      { messages: null, text: 't2' }, // 6 a null field is an absent one
      { completion: 'c' }, // 7 part of prompt-completion
      { instruction: 'i' }, // 8 part of alpaca
      { prompt: 'p' }, // 9 part of prompt-response
      { foo: 1, bar: 2 }, // 10 nothing
      { messages: [{ role: 'user', content: 'q' }] }, // 11 messages, malformed: not retried as another format
      {}, // 12
    ];
    const { report, dataset, quarantine } = await ingest<DataRecord>([{ path: writeFile('auto.jsonl', jsonl(...rows)) }]);
    assert.deepEqual(dataset, [
      { key: contentKey({ messages: chat }), messages: chat },
      { key: recordKey('p', 'c'), prompt: 'p', response: 'c' },
      { key: recordKey('i', 'o'), prompt: 'i', response: 'o' },
      { key: recordKey('p', 'r'), prompt: 'p', response: 'r' },
      { key: contentKey({ text: 't' }), text: 't' },
      { key: contentKey({ text: 't2' }), text: 't2' },
    ]);
    const expected = 'expected messages, prompt + completion, instruction + output, prompt + response, text';
    assert.deepEqual(reasonsByLine(quarantine), [
      [7, 'missing field: "prompt" is absent or not a string (records: prompt-completion)'],
      [8, 'missing field: "output" is absent or not a string (records: alpaca)'],
      [9, 'missing field: "response" is absent or not a string (records: prompt-response)'],
      [10, `unknown record format: none of the fields {foo, bar} belongs to a record format; ${expected}`],
      [11, "bad messages: the last message is the user's; a conversation ends with the assistant's answer"],
      [12, `unknown record format: none of the fields {} belongs to a record format; ${expected}`],
    ]);
    assert.deepEqual(report.formats, { messages: 1, 'prompt-completion': 1, alpaca: 1, 'prompt-response': 1, text: 2 });
    assert.deepEqual(report.reasons, { 'missing field': 3, 'unknown record format': 2, 'bad messages': 1 });
  });

  test('auto reads the data.fields names as prompt and response', async () => {
    const file = writeFile('fields.jsonl', jsonl({ question: 'q', answer: 'a' }, { question: 'q2' }));
    const { dataset, quarantine } = await ingest([{ path: file }], { prompt: 'question', response: 'answer' });
    assert.deepEqual(dataset, [{ key: recordKey('q', 'a'), prompt: 'q', response: 'a' }]);
    assert.deepEqual(reasonsByLine(quarantine), [[2, 'missing field: "answer" is absent or not a string (records: prompt-response)']]);
  });

  test('a stated format reads every row by it and quarantines the rows that do not fit, however well they fit another', async () => {
    const chat: { messages: ChatMessage[] } = { messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'r' }] };
    const rows = [{ text: 'plain' }, { prompt: 'p', response: 'r' }, chat, { prompt: 'p', completion: 'c' }, { instruction: 'i', output: 'o' }];
    const file = writeFile('stated.jsonl', jsonl(...rows));
    const kept = async (records: IngestSource['records']) => {
      const { report, dataset, quarantine } = await ingest<DataRecord>([{ path: file, records }]);
      assert.equal(report.input, 5);
      return { kept: dataset.map((r) => r.key), quarantined: reasonsByLine(quarantine), formats: report.formats };
    };
    assert.deepEqual(await kept('text'), {
      kept: [contentKey({ text: 'plain' })],
      quarantined: [2, 3, 4, 5].map((line) => [line, 'missing field: "text" is absent or not a string (records: text)']),
      formats: { text: 1 },
    });
    assert.deepEqual(await kept('prompt-response'), {
      kept: [recordKey('p', 'r')],
      quarantined: [
        [1, 'missing field: "prompt" is absent or not a string (records: prompt-response)'],
        [3, 'missing field: "prompt" is absent or not a string (records: prompt-response)'],
        [4, 'missing field: "response" is absent or not a string (records: prompt-response)'],
        [5, 'missing field: "prompt" is absent or not a string (records: prompt-response)'],
      ],
      formats: { 'prompt-response': 1 },
    });
    assert.deepEqual(await kept('messages'), {
      kept: [contentKey(chat)],
      quarantined: [1, 2, 4, 5].map((line) => [line, 'missing field: "messages" is absent (records: messages)']),
      formats: { messages: 1 },
    });
    assert.deepEqual(await kept('prompt-completion'), {
      kept: [recordKey('p', 'c')],
      quarantined: [
        [1, 'missing field: "prompt" is absent or not a string (records: prompt-completion)'],
        [2, 'missing field: "completion" is absent or not a string (records: prompt-completion)'],
        [3, 'missing field: "prompt" is absent or not a string (records: prompt-completion)'],
        [5, 'missing field: "prompt" is absent or not a string (records: prompt-completion)'],
      ],
      formats: { 'prompt-completion': 1 },
    });
    assert.deepEqual(await kept('alpaca'), {
      kept: [recordKey('i', 'o')],
      quarantined: [1, 2, 3, 4].map((line) => [line, 'missing field: "instruction" is absent or not a string (records: alpaca)']),
      formats: { alpaca: 1 },
    });
    // And 'auto' keeps all five.
    assert.equal((await kept('auto')).kept.length, 5);
  });

  test('sources may state different formats; the counts add up per source', async () => {
    const a = writeFile('texts.jsonl', jsonl({ text: 'x' }, { text: 'y' }, { prompt: 'p', response: 'r' }));
    const b = writeFile('chats.jsonl', jsonl({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'r' }] }, { text: 'z' }));
    const { report } = await ingest<DataRecord>([
      { path: a, label: 'A', records: 'text' },
      { path: b, label: 'B', records: 'messages' },
    ]);
    assert.deepEqual(
      report.bySource.map(({ label, input, kept, quarantined, formats }) => ({ label, input, kept, quarantined, formats })),
      [
        { label: 'A', input: 3, kept: 2, quarantined: 1, formats: { text: 2 } },
        { label: 'B', input: 2, kept: 1, quarantined: 1, formats: { messages: 1 } },
      ],
    );
    assert.deepEqual({ input: report.input, kept: report.kept, quarantined: report.quarantined }, { input: 5, kept: 3, quarantined: 2 });
    assert.deepEqual(report.formats, { text: 2, messages: 1 });
    assert.deepEqual(report.reasons, { 'missing field': 2 });
  });

  test("a conversation's key, and so its split, does not depend on where it sits or what surrounds it", async () => {
    const split = { validation: 0.1, test: 0.1, salt: 'tempered' };
    const convo = (i: number) => ({
      messages: [
        { role: 'system', content: 'Reverse digits.' },
        { role: 'user', content: `reverse ${i} ${i + 1}` },
        { role: 'assistant', content: `${i + 1} ${i}` },
      ],
    });
    const rows = Array.from({ length: 50 }, (_, i) => convo(i));
    const first = await ingest<DataRecord>([{ path: writeFile('convos.jsonl', jsonl(...rows)) }]);
    // The same data grown, reordered and mixed with other shapes.
    const grown = [{ text: 'new' }, ...[...rows].reverse(), convo(100), { prompt: 'p', response: 'r' }];
    const second = await ingest<DataRecord>([{ path: writeFile('convos-grown.jsonl', jsonl(...grown)) }]);
    const byKey = new Map(second.dataset.map((r) => [r.key, r]));
    assert.equal(new Set(first.dataset.map((r) => r.key)).size, 50);
    for (const r of first.dataset) {
      assert.deepEqual(byKey.get(r.key), r);
      assert.equal(assignSplit(r.key, split), assignSplit(byKey.get(r.key)!.key, split));
    }
    // Every split gets some of them: the key spreads conversations like any other record.
    const counts = { train: 0, validation: 0, test: 0 };
    for (const r of second.dataset) counts[assignSplit(r.key, split)]++;
    assert.equal(counts.train + counts.validation + counts.test, 53);
    assert.ok(counts.train > 30, JSON.stringify(counts));
  });
});

describe('record formats from CSV', () => {
  test('prompt-completion, alpaca and text are detected from the header', async () => {
    const pc = writeFile('pc.csv', 'prompt,completion\nreverse 1 2,2 1\n');
    const alpaca = writeFile('alpaca.csv', 'instruction,input,output\nReverse.,1 2,2 1\nName a colour.,,blue\n"Two\nlines.", ,x\n');
    const text = writeFile('text.csv', 'id,text\nt-1,Once upon a time.\n,"Line one\nline two"\n');
    const { report, dataset, quarantine } = await ingest<DataRecord>([{ path: pc }, { path: alpaca }, { path: text }], { ...defaultFields, key: 'id' });
    assert.deepEqual(dataset, [
      { key: recordKey('reverse 1 2', '2 1'), prompt: 'reverse 1 2', response: '2 1' },
      { key: recordKey('Reverse.\n\n1 2', '2 1'), prompt: 'Reverse.\n\n1 2', response: '2 1' },
      { key: recordKey('Name a colour.', 'blue'), prompt: 'Name a colour.', response: 'blue' },
      { key: recordKey('Two\nlines.', 'x'), prompt: 'Two\nlines.', response: 'x' },
      { key: 't-1', text: 'Once upon a time.' },
      { key: contentKey({ text: 'Line one\nline two' }), text: 'Line one\nline two' },
    ]);
    assert.equal(quarantine.length, 0);
    assert.deepEqual(report.formats, { 'prompt-completion': 1, alpaca: 3, text: 2 });
  });

  test('alpaca without an input column is fine; a stated format whose column is missing is a SourceError', async () => {
    const file = writeFile('alpaca-no-input.csv', 'instruction,output\ni,o\n');
    const { dataset } = await ingest([{ path: file, records: 'alpaca' }]);
    assert.deepEqual(dataset, [{ key: recordKey('i', 'o'), prompt: 'i', response: 'o' }]);
    await assert.rejects(
      ingest([{ path: file, records: 'text' }]),
      (err: Error) => err instanceof SourceError && /no "text" column \(columns: instruction, output\); records: text needs it/.test(err.message),
    );
  });

  test('a CSV cannot hold chat messages: stated, it is an error; a "messages" column is not taken for them', async () => {
    const file = writeFile('messages.csv', 'messages\n"[{""role"":""user"",""content"":""q""}]"\n');
    await assert.rejects(
      ingest([{ path: file, records: 'messages' }]),
      (err: Error) => err instanceof SourceError && /a CSV source cannot hold chat messages/.test(err.message),
    );
    await assert.rejects(
      ingest([{ path: file }]),
      (err: Error) =>
        err instanceof SourceError &&
        err.message.endsWith('the CSV header fits no record format: none of the fields {messages} belongs to a record format; expected prompt + completion, instruction + output, prompt + response, text'),
    );
  });
});
