/**
 * A hostile corpus through the data stages on the real stack (ingest, clean, tokenize and split as activities,
 * no workflow): invalid UTF-8, lone surrogates, NUL and other control characters, a BOM, CRLF and mixed line
 * endings, a 10 MB line, JSON nested 100,000 deep, wrong value types, empty files, a binary file, UTF-16 text
 * read as UTF-8, CSV with quoted newlines, ragged rows and a quote never closed, and the compressed, Parquet and
 * plain-text readers. The corpus comes from a seeded generator that knows what each line must become, so every
 * count is exact: per file, input = kept + quarantined + removed, each quarantined line has its reason, and no
 * stage fails.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, TrainerSlots } from '@tempered/activities';
import type { CleanResult, IngestResult, SplitResult, TokenizeResult } from '@tempered/contract';
import { prng } from '@tempered/examples';
import { cfg, db, demoSpec, store, trainerServer, uniqueId } from '../support';
import { writeParquet, writeZstd } from '../fixtures';

type Reason = string;
/** What a file must become: lines read, and by reason what ingest quarantines and clean removes. */
interface Expected {
  input: number;
  quarantined: Record<Reason, number>;
  removed: Partial<Record<'empty' | 'tooShort' | 'tooLong' | 'duplicate', number>>;
}
interface CorpusFile {
  name: string;
  /** Key prefix of the records it keeps (its ids); undefined for plain text, whose keys are digests. */
  prefix?: string;
  bytes: Buffer | (() => void);
  expected: Expected;
  kept: number;
}

const sum = (r: Record<string, number | undefined>) => Object.values(r).reduce<number>((a, b) => a + (b ?? 0), 0);

/** The corpus: each file built line by line, each line's fate counted as it is written. */
function corpus(dir: string, seed: number): CorpusFile[] {
  const random = prng(seed);
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const WORDS = ['alpha', 'beta', 'gamma', 'δέλτα', '日本語', 'ｆｕｌｌ', 'naïve', 'e\u0301', '😀', 'tab\there', 'zero\u200bwidth'];
  const words = (n: number) => Array.from({ length: n }, () => pick(WORDS)).join(' ');
  /** A record clean keeps: unique by its id in the text, so no two are duplicates. */
  const good = (id: string) => ({ id, prompt: `${id} asks ${words(3 + int(4))}`, response: `answer ${words(2 + int(3))}` });
  /** Lines in random order, each with its fate. */
  const shuffle = <T>(xs: T[]): T[] => {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = int(i + 1);
      [xs[i], xs[j]] = [xs[j], xs[i]];
    }
    return xs;
  };

  const files: CorpusFile[] = [];
  /** A JSONL file from lines of bytes (or text), each tagged kept, removed by clean, or quarantined. */
  type Fate = 'kept' | 'blank' | { removed: keyof Expected['removed'] } | { quarantined: Reason };
  const jsonl = (name: string, lines: Line[], eol = '\n', head = '') => {
    const expected: Expected = { input: 0, quarantined: {}, removed: {} };
    let kept = 0;
    for (const { fate } of lines) {
      if (fate === 'blank') continue; // a blank line is no input
      expected.input++;
      if (fate === 'kept') kept++;
      else if ('removed' in fate) expected.removed[fate.removed] = (expected.removed[fate.removed] ?? 0) + 1;
      else expected.quarantined[fate.quarantined] = (expected.quarantined[fate.quarantined] ?? 0) + 1;
    }
    const parts: Buffer[] = [Buffer.from(head)];
    for (const { bytes } of lines) parts.push(Buffer.from(bytes), Buffer.from(eol));
    files.push({ name, prefix: name, bytes: Buffer.concat(parts), expected, kept });
  };
  type Line = { bytes: Buffer | string; fate: Fate };
  const ok = (id: string): Line => ({ bytes: JSON.stringify(good(id)), fate: 'kept' });

  // Invalid UTF-8 inside a string: a stray byte, a truncated sequence, an overlong form, a surrogate encoded (CESU).
  {
    const name = 'invalid-utf8.jsonl';
    const bad = [[0xff], [0xc3, 0x28], [0xe2, 0x82], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]];
    const lines = Array.from({ length: 20 }, (_, i) => ok(`${name}-${i}`));
    for (let i = 0; i < 8; i++) {
      const [before, after] = JSON.stringify(good(`${name}-bad${i}`)).split(' asks ');
      lines.push({ bytes: Buffer.concat([Buffer.from(`${before} asks `), Buffer.from(pick(bad)), Buffer.from(after)]), fate: { quarantined: 'undecodable bytes' } });
    }
    jsonl(name, shuffle(lines));
  }
  // Lone surrogates as JSON escapes, in each field and the key; proper pairs kept.
  {
    const name = 'surrogates.jsonl';
    const lines = Array.from({ length: 10 }, (_, i) => ok(`${name}-${i}`));
    const lone = ['\\ud800', '\\udbff', '\\udc00', '\\udfff', '\\ude00\\ud83d'];
    for (let i = 0; i < 6; i++) {
      const r = good(`${name}-lone${i}`);
      const field = (['prompt', 'response', 'id'] as const)[i % 3];
      const json = JSON.stringify({ ...r, [field]: `${r[field]}@@` }).replace('@@', pick(lone));
      lines.push({ bytes: json, fate: { quarantined: 'invalid Unicode' } });
    }
    for (let i = 0; i < 2; i++) lines.push({ bytes: JSON.stringify({ ...good(`${name}-pair${i}`), response: 'ok' }).replace('"ok"', '"ok \\ud83d\\ude00"'), fate: 'kept' });
    jsonl(name, shuffle(lines));
  }
  // Control characters: escaped ones are cleaned away (a text of nothing else is then empty); raw ones below
  // U+0020 are not JSON; a raw DEL is.
  {
    const name = 'controls.jsonl';
    const lines = Array.from({ length: 10 }, (_, i) => ok(`${name}-${i}`));
    for (let i = 0; i < 5; i++) lines.push({ bytes: JSON.stringify(good(`${name}-esc${i}`)).replace(' asks ', ' asks \\u0000\\u0007\\u001b '), fate: 'kept' });
    for (let i = 0; i < 3; i++) lines.push({ bytes: JSON.stringify({ id: `${name}-only${i}`, prompt: '\u0000\u0001\u0002', response: 'x' }), fate: { removed: 'empty' } });
    for (const byte of [0x00, 0x01, 0x1f, 0x08]) {
      lines.push({ bytes: Buffer.concat([Buffer.from(`{"id": "${name}-raw${byte}", "prompt": "a`), Buffer.from([byte]), Buffer.from('b", "response": "c"}')]), fate: { quarantined: 'invalid JSON' } });
    }
    lines.push({ bytes: Buffer.concat([Buffer.from(`{"id": "${name}-del", "prompt": "a`), Buffer.from([0x7f]), Buffer.from('b", "response": "c"}')]), fate: 'kept' });
    jsonl(name, shuffle(lines));
  }
  // A BOM, CRLF endings, blank CRLF lines (not inputs), a BOM again mid-file (not JSON whitespace), and exact and
  // after-cleaning duplicates (full-width letters fold to ASCII under NFKC).
  {
    const name = 'bom-crlf.jsonl';
    const lines: Line[] = Array.from({ length: 12 }, (_, i) => ok(`${name}-${i}`));
    lines.push({ bytes: '', fate: 'blank' }, { bytes: '  ', fate: 'blank' });
    lines.push({ bytes: `\uFEFF${JSON.stringify(good(`${name}-bom`))}`, fate: { quarantined: 'invalid JSON' } });
    lines.push({ bytes: JSON.stringify({ id: `${name}-dup0`, prompt: 'same question', response: 'same answer' }), fate: 'kept' });
    lines.push({ bytes: JSON.stringify({ id: `${name}-dup1`, prompt: 'same question', response: 'same answer' }), fate: { removed: 'duplicate' } });
    lines.push({ bytes: JSON.stringify({ id: `${name}-dup2`, prompt: 'ｓａｍｅ   question', response: 'same answer ' }), fate: { removed: 'duplicate' } });
    jsonl(name, shuffle(lines), '\r\n', '\uFEFF');
  }
  // A 10 MB record (ingest keeps it, clean's maxChars removes it) and a 10 MB line that is not JSON.
  {
    const name = 'long-line.jsonl';
    const huge = 'word '.repeat(2_000_000);
    jsonl(name, [
      ok(`${name}-0`),
      { bytes: JSON.stringify({ id: `${name}-huge`, prompt: huge, response: 'x' }), fate: { removed: 'tooLong' } },
      ok(`${name}-1`),
      { bytes: `{"id": "${name}-cut", "prompt": "${huge}`, fate: { quarantined: 'invalid JSON' } },
      ok(`${name}-2`),
    ]);
  }
  // JSON nested 100,000 deep: in a field a format needs, in a role, as the whole row, and in a field nothing reads.
  {
    const name = 'nested.jsonl';
    const depth = 100_000;
    const deepArray = '['.repeat(depth) + ']'.repeat(depth);
    const deepObject = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
    const lines = Array.from({ length: 4 }, (_, i) => ok(`${name}-${i}`));
    lines.push(
      { bytes: `{"id": "${name}-p", "prompt": ${deepArray}, "response": "r"}`, fate: { quarantined: 'missing field' } },
      { bytes: `{"id": "${name}-m", "messages": [{"role": ${deepObject}, "content": "c"}]}`, fate: { quarantined: 'bad messages' } },
      { bytes: deepObject, fate: { quarantined: 'unknown record format' } },
      { bytes: deepArray, fate: { quarantined: 'not a JSON object' } },
      { bytes: JSON.stringify(good(`${name}-extra`)).replace(/}$/, `, "meta": ${deepArray}}`), fate: 'kept' },
    );
    jsonl(name, shuffle(lines));
  }
  // Wrong value types.
  {
    const name = 'wrong-types.jsonl';
    const lines = Array.from({ length: 6 }, (_, i) => ok(`${name}-${i}`));
    const missing = { quarantined: 'missing field' };
    const badMessages = { quarantined: 'bad messages' };
    const notObject = { quarantined: 'not a JSON object' };
    lines.push(
      { bytes: `{"id": "${name}-a", "prompt": 7, "response": "r"}`, fate: missing },
      { bytes: `{"id": "${name}-b", "prompt": "p", "response": {"text": "r"}}`, fate: missing },
      { bytes: `{"id": "${name}-c", "text": true}`, fate: missing },
      { bytes: `{"id": "${name}-d", "prompt": null, "response": "r"}`, fate: missing },
      { bytes: `{"id": "${name}-e", "messages": "hello"}`, fate: badMessages },
      { bytes: `{"id": "${name}-f", "messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]}`, fate: badMessages },
      { bytes: '"a string"', fate: notObject },
      { bytes: '42', fate: notObject },
      { bytes: 'null', fate: notObject },
      { bytes: 'true', fate: notObject },
    );
    jsonl(name, shuffle(lines));
  }
  // Empty files.
  files.push({ name: 'empty.jsonl', prefix: 'empty.jsonl', bytes: Buffer.alloc(0), expected: { input: 0, quarantined: {}, removed: {} }, kept: 0 });
  files.push({ name: 'empty.csv', prefix: 'empty.csv', bytes: Buffer.alloc(0), expected: { input: 0, quarantined: {}, removed: {} }, kept: 0 });
  // Binary: random bytes in 17 lines, each holding a byte that is never UTF-8 (0xff).
  {
    const bytes = Buffer.from(Array.from({ length: 8192 }, () => int(256)));
    for (let i = 0; i < bytes.length; i++) if (bytes[i] === 0x0a) bytes[i] = 0xff;
    const lines: Buffer[] = [];
    for (let i = 0; i < 17; i++) lines.push(Buffer.concat([Buffer.from([0xff]), bytes.subarray(i * 480, (i + 1) * 480)]));
    files.push({ name: 'binary.jsonl', bytes: Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\n')])), expected: { input: 17, quarantined: { 'undecodable bytes': 17 }, removed: {} }, kept: 0 });
  }
  // UTF-16LE with its BOM, read as UTF-8: the BOM's bytes are not UTF-8, every later line starts with the NUL
  // that ended the previous line's "\n", and the file ends in one more NUL after the last line break.
  {
    const text = Array.from({ length: 8 }, (_, i) => JSON.stringify({ id: `utf16-${i}`, prompt: `ascii prompt ${i}`, response: 'r' }) + '\n').join('');
    const bytes = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
    files.push({ name: 'utf16.jsonl', bytes, expected: { input: 9, quarantined: { 'undecodable bytes': 1, 'invalid JSON': 8 }, removed: {} }, kept: 0 });
  }
  // CSV: quoted newlines (LF and CRLF), quoted commas and quotes, ragged rows, a blank cell clean removes, and a
  // quote never closed that takes the rest of the file into one quarantined record.
  {
    const name = 'quoted.csv';
    const rows: Array<[string, 'kept' | Reason]> = [];
    for (let i = 0; i < 8; i++) rows.push([`${name}-${i},plain ${words(2)},answer ${i}`, 'kept']);
    rows.push([`${name}-nl0,"first line\nsecond line",a`, 'kept']);
    rows.push([`${name}-nl1,"crlf\r\ninside",b`, 'kept']);
    rows.push([`${name}-nl2,"three\n\nparagraphs",c`, 'kept']);
    rows.push([`${name}-q,"say ""hi"", then, go",d`, 'kept']);
    rows.push([`${name}-blank,"   ",e`, 'empty']);
    rows.push([`${name}-short,only two`, 'wrong number of columns']);
    rows.push([`${name}-short2`, 'wrong number of columns']);
    rows.push([`${name}-long,a,b,c`, 'wrong number of columns']);
    rows.push([`${name}-long2,a,b,c,d,e`, 'wrong number of columns']);
    shuffle(rows);
    rows.push([`${name}-open,"never closed,f\n${name}-after,p,r`, 'unparseable CSV']);
    const expected: Expected = { input: rows.length, quarantined: {}, removed: {} };
    let kept = 0;
    for (const [, fate] of rows) {
      if (fate === 'kept') kept++;
      else if (fate === 'empty') expected.removed.empty = (expected.removed.empty ?? 0) + 1;
      else expected.quarantined[fate] = (expected.quarantined[fate] ?? 0) + 1;
    }
    // CRLF after the header, LF after the rows: mixed endings, as files edited on two systems have.
    const text = 'id,prompt,response\r\n' + rows.map(([r]) => r).join('\n') + '\n';
    files.push({ name, prefix: name, bytes: Buffer.from(text), expected, kept });
  }
  // The other readers, with defects of their own: gzip, zstd (pyarrow), Parquet (pyarrow), plain text.
  {
    const name = 'good.jsonl.gz';
    const rows = Array.from({ length: 10 }, (_, i) => JSON.stringify(good(`${name}-${i}`)));
    rows.splice(4, 0, '{"id": "x", "prompt": "\\ud800", "response": "r"}');
    files.push({ name, prefix: name, bytes: gzipSync(rows.join('\n') + '\n'), expected: { input: 11, quarantined: { 'invalid Unicode': 1 }, removed: {} }, kept: 10 });
  }
  {
    const name = 'good.csv.zst';
    const text = 'id,prompt,response\n' + Array.from({ length: 6 }, (_, i) => `${name}-${i},"q ${i}\nmore",a ${i}`).join('\n') + '\nragged\n';
    files.push({ name, prefix: name, bytes: () => writeZstd(path.join(dir, name), text), expected: { input: 7, quarantined: { 'wrong number of columns': 1 }, removed: {} }, kept: 6 });
  }
  {
    const name = 'rows.parquet';
    const rows: Array<Record<string, unknown>> = Array.from({ length: 9 }, (_, i) => good(`${name}-${i}`));
    rows.push({ id: `${name}-m`, messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'there' }] });
    rows.push({ id: `${name}-nul`, prompt: 'only\u0000\u0000', response: '\u0000' }); // response empty once cleaned
    rows.push({ id: `${name}-none`, prompt: 'no response' });
    files.push({ name, prefix: name, bytes: () => writeParquet(path.join(dir, name), rows, { rowGroupSize: 4 }), expected: { input: 12, quarantined: { 'missing field': 1 }, removed: { empty: 1 } }, kept: 10 });
  }
  {
    const name = 'corpus.txt';
    const text = 'a first document\r\n\r\nanother document\n\u0000\u0001\nbad \xff byte\na first document\nlast one';
    files.push({ name, bytes: Buffer.from(text, 'latin1'), expected: { input: 6, quarantined: { 'undecodable bytes': 1 }, removed: { empty: 1, duplicate: 1 } }, kept: 3 });
  }
  return files;
}

describe('a hostile corpus through the data stages', () => {
  const database = db();
  const activities = createActivities({ cfg, db: database, store: store(), slots: TrainerSlots.unlimited(), stageCache: false, trainerServer });
  const env = new MockActivityEnvironment();
  const runId = uniqueId('fuzz');
  const dataDir = path.join(cfg.dataDir, 'uploads', runId);
  let files: CorpusFile[];

  before(async () => {
    mkdirSync(dataDir, { recursive: true });
    files = corpus(dataDir, 20261202);
    for (const f of files) {
      if (typeof f.bytes === 'function') f.bytes();
      else writeFileSync(path.join(dataDir, f.name), f.bytes);
    }
    await database.insertInto('runs').values({ id: runId, name: 'fuzz', spec: '{}', status: 'running', requested_by: 'test' }).execute();
  });
  after(() => database.destroy());

  const spec = () => {
    const s = demoSpec();
    s.data.sources = files.map((f) => ({ uri: f.name, encoding: 'utf-8' as const }));
    s.data.fields = { prompt: 'prompt', response: 'response', key: 'id' };
    return s;
  };
  const lines = async (uri: string) => (await store().getBytes(uri)).toString('utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  /** Which file a record of the dataset came from: by its id's prefix, else (a digest key) the plain text. */
  const fileOf = (key: string) => files.find((f) => f.prefix !== undefined && key.startsWith(`${f.prefix}-`))?.name ?? 'corpus.txt';

  let ingested: IngestResult;
  let cleaned: CleanResult;
  let tokenized: TokenizeResult;

  test('ingest: every line is kept or quarantined with its reason, per file exactly as generated', async () => {
    ingested = await env.run(activities.ingest, { runId, spec: spec(), specDir: dataDir });
    const quarantine = await lines(ingested.quarantine.uri);
    const dataset = await lines(ingested.dataset.uri);
    for (const q of quarantine) assert.ok(q.reason && q.line > 0 && typeof q.raw === 'string' && q.raw.length <= 500, JSON.stringify(q).slice(0, 300));
    const perFile = new Map(files.map((f) => [f.name, { reasons: {} as Record<string, number>, kept: 0 }]));
    for (const q of quarantine) {
      const kind = q.reason.split(':')[0];
      const counts = perFile.get(q.source)!.reasons;
      counts[kind] = (counts[kind] ?? 0) + 1;
    }
    for (const r of dataset) perFile.get(fileOf(r.key))!.kept++;
    for (const f of files) {
      const got = perFile.get(f.name)!;
      const removed = sum(f.expected.removed);
      assert.deepEqual(got.reasons, f.expected.quarantined, `${f.name}: quarantined by reason`);
      assert.equal(got.kept, f.kept + removed, `${f.name}: kept by ingest`);
      assert.equal(got.kept + sum(got.reasons), f.expected.input, `${f.name}: kept + quarantined = input`);
    }
    const input = files.reduce((n, f) => n + f.expected.input, 0);
    const quarantined = files.reduce((n, f) => n + sum(f.expected.quarantined), 0);
    assert.deepEqual(ingested.counts, { input, kept: input - quarantined, quarantined });
  });

  test('clean: per file, input = kept + quarantined + removed, with the removals by reason', async () => {
    cleaned = await env.run(activities.clean, { runId, spec: spec(), dataset: ingested.dataset });
    const report = JSON.parse((await store().getBytes(cleaned.report.uri)).toString('utf8'));
    const expectedRemoved = { empty: 0, tooShort: 0, tooLong: 0, duplicate: 0 };
    for (const f of files) for (const [k, n] of Object.entries(f.expected.removed)) expectedRemoved[k as keyof typeof expectedRemoved] += n ?? 0;
    assert.deepEqual(report.removed, expectedRemoved);
    const keptPerFile = new Map<string, number>();
    for (const r of await lines(cleaned.cleaned.uri)) keptPerFile.set(fileOf(r.key), (keptPerFile.get(fileOf(r.key)) ?? 0) + 1);
    for (const f of files) {
      const kept = keptPerFile.get(f.name) ?? 0;
      assert.equal(kept, f.kept, `${f.name}: kept after clean`);
      assert.equal(kept + sum(f.expected.quarantined) + sum(f.expected.removed), f.expected.input, `${f.name}: input = kept + quarantined + removed`);
    }
    assert.equal(cleaned.counts.kept, files.reduce((n, f) => n + f.kept, 0));
    // What clean writes is text every later stage can encode: valid UTF-8, no lone surrogate (JSON.stringify
    // escapes only those), no control character but tab and newline.
    const text = new TextDecoder('utf-8', { fatal: true }).decode(await store().getBytes(cleaned.cleaned.uri));
    assert.ok(!/\\ud[89a-f][0-9a-f]{2}/i.test(text), 'no lone surrogate');
    assert.ok(!/\\u00[01][0-9a-f]/i.test(text.replace(/\\u000[9a]|\\[nt]/gi, '')), 'no control character but tab and newline');
  });

  test('tokenize and split take every cleaned record, none failing', async () => {
    tokenized = await env.run(activities.tokenize, { runId, spec: spec(), cleaned: cleaned.cleaned });
    assert.equal(tokenized.counts.records, cleaned.counts.kept);
    assert.ok(tokenized.counts.tokens > 0);
    const split: SplitResult = await env.run(activities.split, { runId, spec: spec(), encoded: tokenized.encoded });
    assert.equal(split.counts.train + split.counts.validation + split.counts.test, cleaned.counts.kept);
  });
});
