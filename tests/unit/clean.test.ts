/**
 * Unit tests of the clean core (activities/src/clean-core.ts): each text rule on its own, their order, the
 * removal rules, the report (counts, samples, kept + removed = input), every record shape (turns,
 * conversations, plain texts), and the demo data end to end.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CHANGE_RULES, cleanText, collapseWhitespace, maskEmails, maskPhones, normalizeNfkc, stripControlChars } from '@tempered/text';
import { cleanFile, removalReason, type CleanOptions, type CleanReport } from '../../activities/src/clean-core';
import { DigestSet } from '../../activities/src/digest-set';
import { ingestFiles } from '../../activities/src/ingest-core';
import type { ChatMessage, DataRecord, TurnRecord } from '../../activities/src/records';
import { generateDemoData } from '../../examples/src/index';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tempered-clean-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let fileCounter = 0;

/** The spec's defaults. */
const defaults: CleanOptions = {
  nfkc: true,
  stripControl: true,
  collapseWhitespace: true,
  dedupe: 'exact',
  maskPii: true,
  minChars: 1,
  maxChars: 4000,
};
const allOff: CleanOptions = { ...defaults, nfkc: false, stripControl: false, collapseWhitespace: false, maskPii: false, dedupe: 'none' };

async function clean(records: DataRecord[], options: CleanOptions = defaults): Promise<{ report: CleanReport; out: DataRecord[] }> {
  const n = ++fileCounter;
  const inPath = path.join(root, `${n}-in.jsonl`);
  const outPath = path.join(root, `${n}-out.jsonl`);
  fs.writeFileSync(inPath, records.map((r) => JSON.stringify(r) + '\n').join(''));
  const report = await cleanFile(inPath, outPath, options);
  const out = fs
    .readFileSync(outPath, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as DataRecord);
  const removed = Object.values(report.removed).reduce((a, b) => a + b, 0);
  assert.equal(report.kept + removed, report.input, 'kept + removed = input');
  assert.equal(out.length, report.kept);
  return { report, out };
}

const rec = (key: string, prompt: string, response: string): DataRecord => ({ key, prompt, response });

describe('NFKC', () => {
  test('folds full-width letters, digits and spaces into ASCII', () => {
    assert.equal(normalizeNfkc('ｒｅｖｅｒｓｅ　３　９　１'), 'reverse 3 9 1');
    assert.equal(normalizeNfkc('reverse ３ ９ １'), 'reverse 3 9 1');
    assert.equal(normalizeNfkc('ｶﾀｶﾅ ﬁ ①'), 'カタカナ fi 1');
  });
  test('leaves ASCII and ordinary Japanese alone', () => {
    assert.equal(normalizeNfkc('reverse 3 9 1'), 'reverse 3 9 1');
    assert.equal(normalizeNfkc('日本語のテキスト'), '日本語のテキスト');
  });
});

describe('control characters', () => {
  test('removes C0, DEL and C1 controls, including carriage returns', () => {
    assert.equal(stripControlChars('a\u0000b\u0007c\u001bd\u007fe\u0085f\rg'), 'abcdefg');
  });
  test('keeps newlines and tabs', () => {
    assert.equal(stripControlChars('line 1\nline\t2'), 'line 1\nline\t2');
  });
  test('leaves non-control characters such as zero-width spaces and emoji', () => {
    assert.equal(stripControlChars('a\u200bb 🙂'), 'a\u200bb 🙂');
  });
});

describe('whitespace', () => {
  test('collapses runs of spaces and tabs to one space and trims', () => {
    assert.equal(collapseWhitespace('  reverse  3\t\t9 \t 1  '), 'reverse 3 9 1');
  });
  test('keeps single newlines, collapses blank lines and spaces around newlines', () => {
    assert.equal(collapseWhitespace('a\nb'), 'a\nb');
    assert.equal(collapseWhitespace('a  \n\n \n  b\n'), 'a\nb');
  });
  test('leaves single-spaced text untouched', () => {
    assert.equal(collapseWhitespace('reverse 3 9 1 4'), 'reverse 3 9 1 4');
  });
});

describe('PII masking', () => {
  test('masks e-mail addresses', () => {
    assert.equal(maskEmails('reverse 1 2 3 (from ann@example.com)'), 'reverse 1 2 3 (from [EMAIL])');
    assert.equal(maskEmails('a.b+tag@mail.co.jp, x_y@sub.example.org'), '[EMAIL], [EMAIL]');
    assert.equal(maskEmails('not an address: a@b, @home'), 'not an address: a@b, @home');
  });

  test('masks phone numbers in international and common national formats', () => {
    for (const phone of [
      '+81 90-1234-5678',
      '+81-3-1234-5678',
      '+44 20 7946 0958',
      '+1 (555) 123-4567',
      '+15551234567',
      '(555) 123-4567',
      '(03) 1234-5678',
      '555-123-4567',
      '090-1234-5678',
      '555.123.4567',
    ]) {
      assert.equal(maskPhones(`call ${phone} today`), 'call [PHONE] today', phone);
      assert.equal(maskPhones(`(${phone})`), '([PHONE])', phone);
    }
  });

  test('does not mask digit lists, dates, versions or addresses', () => {
    for (const text of [
      'reverse 3 9 1 4',
      '4 1 9 3',
      'reverse 1 2 3 4 5',
      '1 2 3 4 5 6 7 8 9 0 1 2',
      '12 345 6789',
      '2024-01-15',
      '2024.01.15',
      'v1.2.3',
      '192.168.100.200',
      '+1 2 3',
      'order 1234567',
      '12-34',
    ]) {
      assert.equal(maskPhones(text), text, text);
    }
  });
});

describe('cleanText', () => {
  test('applies the rules in order, NFKC first so that full-width PII is caught', () => {
    const { text, changes } = cleanText('ｍａｉｌ　ａｎｎ＠ｅｘａｍｐｌｅ．ｃｏｍ\u0007  ok', defaults);
    assert.equal(text, 'mail [EMAIL] ok');
    assert.deepEqual(
      changes.map((c) => c.rule),
      ['nfkc', 'control', 'whitespace', 'email'],
    );
    // Each change records the text just before and after its own rule.
    assert.equal(changes[1].before, 'mail ann@example.com\u0007  ok');
    assert.equal(changes[1].after, 'mail ann@example.com  ok');
  });

  test('control characters are removed before whitespace is collapsed', () => {
    assert.equal(cleanText('a \u0007 b', defaults).text, 'a b');
  });

  test('disabled rules do nothing', () => {
    const input = 'ｘ\u0007  ann@example.com 555-123-4567';
    assert.deepEqual(cleanText(input, allOff), { text: input, changes: [] });
  });
});

test('removalReason: empty fields, then the length bounds in code points', () => {
  const bounds = { minChars: 3, maxChars: 6 };
  assert.equal(removalReason({ prompt: '', response: 'abc' }, bounds), 'empty');
  assert.equal(removalReason({ prompt: 'abc', response: '' }, bounds), 'empty');
  assert.equal(removalReason({ prompt: 'a', response: 'b' }, bounds), 'tooShort');
  assert.equal(removalReason({ prompt: 'ab', response: 'c' }, bounds), undefined);
  assert.equal(removalReason({ prompt: 'abc', response: 'def' }, bounds), undefined);
  assert.equal(removalReason({ prompt: 'abcd', response: 'efg' }, bounds), 'tooLong');
  // Three emoji are three characters (six UTF-16 units).
  assert.equal(removalReason({ prompt: '🙂🙂🙂', response: 'abc' }, bounds), undefined);
});

describe('cleanFile', () => {
  test('reports every rule and removal, and writes the cleaned records in order with their keys', async () => {
    const { report, out } = await cleanFile2([
      rec('k1', 'reverse ３ ９ １', '1 9 3'), // nfkc
      rec('k2', 'reverse 4\u0007 5', '5 4'), // control
      rec('k3', 'reverse  6 7', '7 6 '), // whitespace (both fields: one record)
      rec('k4', 'reverse 1 2 (from ann@example.com)', '2 1'), // email
      rec('k5', 'reverse 3 4 (call +81 90-1234-5678)', '4 3'), // phone
      rec('k6', '   ', 'x'), // empty after cleaning
      rec('k7', 'a', ''), // empty
      rec('k8', 'reverse 3 9 1', '1 9 3'), // duplicate of k1 once k1 is normalized
      rec('k9', 'reverse 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9', '9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9'), // too long
      rec('k10', 'x', 'y'), // too short
      rec('k11', 'reverse 1 2 3 4', '4 3 2 1'), // untouched
    ]);
    assert.deepEqual(report.removed, { empty: 2, tooShort: 1, tooLong: 1, duplicate: 1 });
    assert.equal(report.input, 11);
    assert.equal(report.kept, 6);
    assert.deepEqual(report.changed, { nfkc: 1, control: 1, whitespace: 2, email: 1, phone: 1 });
    assert.equal(report.changedRecords, 6);
    assert.deepEqual(out, [
      rec('k1', 'reverse 3 9 1', '1 9 3'),
      rec('k2', 'reverse 4 5', '5 4'),
      rec('k3', 'reverse 6 7', '7 6'),
      rec('k4', 'reverse 1 2 (from [EMAIL])', '2 1'),
      rec('k5', 'reverse 3 4 (call [PHONE])', '4 3'),
      rec('k11', 'reverse 1 2 3 4', '4 3 2 1'),
    ]);
    assert.deepEqual(report.examples.nfkc, [{ key: 'k1', field: 'prompt', before: 'reverse ３ ９ １', after: 'reverse 3 9 1' }]);
    assert.deepEqual(report.examples.control, [{ key: 'k2', field: 'prompt', before: 'reverse 4\u0007 5', after: 'reverse 4 5' }]);
    assert.deepEqual(report.examples.phone, [
      { key: 'k5', field: 'prompt', before: 'reverse 3 4 (call +81 90-1234-5678)', after: 'reverse 3 4 (call [PHONE])' },
    ]);
    assert.deepEqual(
      report.examples.whitespace.map((s) => [s.key, s.field]),
      [
        ['k3', 'prompt'],
        ['k6', 'prompt'],
      ],
    );

    async function cleanFile2(records: DataRecord[]) {
      return clean(records, { ...defaults, minChars: 3, maxChars: 60 });
    }
  });

  test('keeps at most 3 samples per rule', async () => {
    const records = Array.from({ length: 10 }, (_, i) => rec(`k${i}`, `ｐ${i}`, `r${i}`));
    const { report } = await clean(records);
    assert.equal(report.changed.nfkc, 10);
    assert.deepEqual(report.examples.nfkc.map((s) => s.key), ['k0', 'k1', 'k2']);
  });

  test('dedupe "exact" keeps the first copy; "none" keeps all', async () => {
    const records = [rec('a', 'p', 'r'), rec('b', 'p', 'r'), rec('c', 'p', 'r2'), rec('d', 'p ', 'r')];
    const exact = await clean(records);
    assert.deepEqual(exact.out.map((r) => r.key), ['a', 'c']);
    assert.equal(exact.report.removed.duplicate, 2);
    const none = await clean(records, { ...defaults, dedupe: 'none' });
    assert.deepEqual(none.out.map((r) => r.key), ['a', 'b', 'c', 'd']);
    assert.equal(none.report.removed.duplicate, 0);
  });

  test('a duplicate is a duplicate of the pair, not of the concatenation', async () => {
    const { out } = await clean([rec('a', 'ab', 'c'), rec('b', 'a', 'bc')]);
    assert.equal(out.length, 2);
  });

  test('with every rule off, records pass through byte for byte', async () => {
    const records = [rec('a', ' ｘ\u0007 ', 'ann@example.com'), rec('b', ' ｘ\u0007 ', 'ann@example.com')];
    const { report, out } = await clean(records, allOff);
    assert.deepEqual(out, records);
    assert.equal(report.changedRecords, 0);
  });

  test('rejects an input line that is not a record, naming the line', async () => {
    const inPath = path.join(root, 'broken.jsonl');
    fs.writeFileSync(inPath, '{"key":"a","prompt":"p","response":"r"}\n{"key":"b","prompt":"p"}\n');
    await assert.rejects(cleanFile(inPath, path.join(root, 'broken-out.jsonl'), defaults), /broken\.jsonl:2: not a training record \(\{key, prompt, response\}/);
  });
});

test('demo data: cleaning reports exactly the planted changes and never masks a digit list', async () => {
  const dir = path.join(root, 'demo');
  const summary = generateDemoData(dir, { records: 400, seed: 5 });
  const dataset = path.join(dir, 'dataset.jsonl');
  await ingestFiles(
    [
      { path: summary.train.path, label: 'train', format: 'jsonl', encoding: 'utf-8' },
      { path: summary.extra.path, label: 'extra', format: 'csv', encoding: 'shift_jis' },
    ],
    { prompt: 'prompt', response: 'response' },
    { datasetPath: dataset, quarantinePath: path.join(dir, 'quarantine.jsonl') },
  );
  const cleaned = path.join(dir, 'cleaned.jsonl');
  const report = await cleanFile(dataset, cleaned, defaults);
  assert.equal(report.input, summary.totals.wellFormed);
  assert.deepEqual(report.removed, { empty: 0, tooShort: 0, tooLong: 0, duplicate: summary.totals.duplicates });
  assert.deepEqual(report.changed, {
    nfkc: summary.extra.records,
    control: summary.train.controlChars,
    whitespace: summary.train.extraWhitespace,
    email: summary.train.emails,
    phone: summary.train.phones,
  });
  const lines = fs.readFileSync(cleaned, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as TurnRecord);
  // Every cleaned record is the task in its canonical ASCII form, except the two planted PII ones.
  const canonical = lines.filter((r) => /^reverse \d( \d){2,4}$/.test(r.prompt) && /^\d( \d){2,4}$/.test(r.response));
  assert.equal(canonical.length, lines.length - 2);
  assert.equal(lines.filter((r) => r.prompt.includes('[PHONE]')).length, 1);
  assert.equal(lines.filter((r) => r.prompt.includes('[EMAIL]')).length, 1);
  assert.ok(!lines.some((r) => r.response.includes('[')));
});

describe('conversations and plain texts', () => {
  const chat = (key: string, ...turns: Array<[ChatMessage['role'], string]>): DataRecord => ({ key, messages: turns.map(([role, content]) => ({ role, content })) });
  const text = (key: string, t: string): DataRecord => ({ key, text: t });

  test('every rule cleans every message of a multi-turn conversation, and plain text', async () => {
    const { report, out } = await clean([
      chat(
        'c1',
        ['system', 'Ｙｏｕ  reverse digits.'], // nfkc, whitespace
        ['user', 'reverse 1 2, mail ann@example.com'], // email
        ['assistant', '2 1\u0007'], // control
        ['user', 'and 3 4? call 555-123-4567'], // phone
        ['assistant', '4 3'],
      ),
      text('t1', '  Once\tupon a time: bob@example.org\n\n\nThe end. '), // whitespace, email
    ]);
    assert.deepEqual(out, [
      chat(
        'c1',
        ['system', 'You reverse digits.'],
        ['user', 'reverse 1 2, mail [EMAIL]'],
        ['assistant', '2 1'],
        ['user', 'and 3 4? call [PHONE]'],
        ['assistant', '4 3'],
      ),
      text('t1', 'Once upon a time: [EMAIL]\nThe end.'),
    ]);
    assert.deepEqual(report.changed, { nfkc: 1, control: 1, whitespace: 2, email: 2, phone: 1 });
    assert.equal(report.changedRecords, 2);
    assert.deepEqual(
      CHANGE_RULES.map((rule) => [rule, report.examples[rule].map((e) => [e.key, e.field])]),
      [
        ['nfkc', [['c1', 'messages.0']]],
        ['control', [['c1', 'messages.2']]],
        ['whitespace', [['c1', 'messages.0'], ['t1', 'text']]],
        ['email', [['c1', 'messages.1'], ['t1', 'text']]],
        ['phone', [['c1', 'messages.3']]],
      ],
    );
    assert.deepEqual(report.examples.phone[0], { key: 'c1', field: 'messages.3', before: 'and 3 4? call 555-123-4567', after: 'and 3 4? call [PHONE]' });
  });

  test('a message or a text left empty removes its record as empty; the length bounds count every message', async () => {
    const { report, out } = await clean(
      [
        chat('ok', ['user', 'abc'], ['assistant', 'def']), // 6 characters
        chat('empty-system', ['system', ' \u0007 '], ['user', 'abc'], ['assistant', 'def']),
        chat('empty-middle', ['user', 'abc'], ['assistant', '\t'], ['user', 'ghi'], ['assistant', 'jkl']),
        chat('empty-answer', ['user', 'abc'], ['assistant', '']),
        text('empty-text', '   '),
        chat('short', ['user', 'a'], ['assistant', 'b']), // 2 < 3
        chat('long', ['user', 'abc'], ['assistant', 'def'], ['user', 'ghi'], ['assistant', 'jkl']), // 12 > 10
        text('text-ok', 'abcdefghij'), // 10
        text('text-long', 'abcdefghijk'), // 11
      ],
      { ...defaults, minChars: 3, maxChars: 10 },
    );
    assert.deepEqual(out.map((r) => r.key), ['ok', 'text-ok']);
    assert.deepEqual(report.removed, { empty: 4, tooShort: 1, tooLong: 2, duplicate: 0 });
    assert.equal(report.input, 9);
  });

  test('removalReason looks at every text of any shape', () => {
    const bounds = { minChars: 3, maxChars: 6 };
    assert.equal(removalReason({ messages: [{ role: 'user', content: 'ab' }, { role: 'assistant', content: 'c' }] }, bounds), undefined);
    assert.equal(removalReason({ messages: [{ role: 'system', content: '' }, { role: 'user', content: 'ab' }, { role: 'assistant', content: 'c' }] }, bounds), 'empty');
    assert.equal(removalReason({ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] }, bounds), 'tooShort');
    assert.equal(removalReason({ messages: [{ role: 'user', content: 'abcd' }, { role: 'assistant', content: 'efg' }] }, bounds), 'tooLong');
    assert.equal(removalReason({ text: '' }, bounds), 'empty');
    assert.equal(removalReason({ text: '🙂🙂🙂' }, bounds), undefined);
  });

  test('dedupe compares whole conversations, roles included, once cleaned; a turn is its [user, assistant] conversation', async () => {
    const records = [
      chat('a', ['user', 'reverse 1 2'], ['assistant', '2 1'], ['user', 'reverse 3 4'], ['assistant', '4 3']),
      chat('b', ['user', 'reverse 1 2'], ['assistant', '2 1'], ['user', 'reverse ３ 4 '], ['assistant', '4 3']), // same once cleaned
      chat('c', ['user', 'reverse 1 2'], ['assistant', '2 1'], ['user', 'reverse 3 4'], ['assistant', '4 3!']), // last answer differs
      chat('d', ['user', 'reverse 9 9'], ['assistant', '2 1'], ['user', 'reverse 3 4'], ['assistant', '4 3']), // first message differs
      chat('e', ['system', 'reverse 1 2'], ['user', '2 1'], ['user', 'reverse 3 4'], ['assistant', '4 3']), // roles differ
      chat('f', ['user', 'reverse 1 2'], ['assistant', '2 1 reverse 3 4'], ['assistant', '4 3']), // texts joined differently
      rec('g', 'reverse 1 2', '2 1'),
      chat('h', ['user', 'reverse 1 2'], ['assistant', '2 1']), // the turn g as a conversation: a duplicate
      text('i', 'reverse 1 2'),
      text('j', ' reverse  1 2'), // same text once cleaned
    ];
    const exact = await clean(records);
    assert.deepEqual(exact.out.map((r) => r.key), ['a', 'c', 'd', 'e', 'f', 'g', 'i']);
    assert.equal(exact.report.removed.duplicate, 3);
    const none = await clean(records, { ...defaults, dedupe: 'none' });
    assert.equal(none.out.length, 10);
  });

  test('turns are written byte for byte as before, beside the other shapes', async () => {
    const inPath = path.join(root, 'mixed-in.jsonl');
    const outPath = path.join(root, 'mixed-out.jsonl');
    const records = [rec('k1', 'reverse  ３ 9', '9 3'), chat('k2', ['user', 'q'], ['assistant', 'r']), text('k3', 't')];
    fs.writeFileSync(inPath, records.map((r) => JSON.stringify(r) + '\n').join(''));
    await cleanFile(inPath, outPath, defaults);
    assert.equal(
      fs.readFileSync(outPath, 'utf8'),
      '{"key":"k1","prompt":"reverse 3 9","response":"9 3"}\n' +
        '{"key":"k2","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"r"}]}\n' +
        '{"key":"k3","text":"t"}\n',
    );
  });

  test('ingest then clean: a chat JSONL end to end', async () => {
    const dir = fs.mkdtempSync(path.join(root, 'chat-'));
    const source = path.join(dir, 'chat.jsonl');
    const convo = (user: string) => ({ messages: [{ role: 'user', content: user }, { role: 'assistant', content: 'ok' }] });
    fs.writeFileSync(source, [convo('hi ann@example.com'), convo('hi  ann@example.com'), convo('bye'), { messages: [] }].map((r) => JSON.stringify(r) + '\n').join(''));
    const dataset = path.join(dir, 'dataset.jsonl');
    const ingested = await ingestFiles([{ path: source, label: 'chat', format: 'jsonl', encoding: 'utf-8' }], { prompt: 'prompt', response: 'response' }, { datasetPath: dataset, quarantinePath: path.join(dir, 'q.jsonl') });
    assert.deepEqual({ kept: ingested.kept, quarantined: ingested.quarantined }, { kept: 3, quarantined: 1 });
    const report = await cleanFile(dataset, path.join(dir, 'cleaned.jsonl'), defaults);
    assert.deepEqual({ input: report.input, kept: report.kept, removed: report.removed }, { input: 3, kept: 2, removed: { empty: 0, tooShort: 0, tooLong: 0, duplicate: 1 } });
    const cleaned = fs.readFileSync(path.join(dir, 'cleaned.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as DataRecord);
    assert.deepEqual(cleaned.map((r) => ('messages' in r ? r.messages[0].content : undefined)), ['hi [EMAIL]', 'bye']);
  });
});

test('DigestSet answers as a Set of the digests would, through many doublings, the all-zero digest included', () => {
  const set = new DigestSet();
  const reference = new Set<string>();
  const digest = (i: number) => createHash('sha256').update(String(i)).digest();
  // 50,000 distinct digests, each offered twice in an interleaved order, and digests that share their first word.
  for (let i = 0; i < 100_000; i++) {
    const d = digest(i % 50_000);
    assert.equal(set.add(d), !reference.has(d.toString('hex')), `digest ${i}`);
    reference.add(d.toString('hex'));
  }
  const sameFirstWord = Buffer.alloc(32, 7);
  const other = Buffer.from(sameFirstWord);
  other[15] = 8;
  assert.equal(set.add(sameFirstWord), true);
  assert.equal(set.add(other), true);
  assert.equal(set.add(other), false);
  assert.equal(set.add(Buffer.alloc(32)), true);
  assert.equal(set.add(Buffer.alloc(32)), false);
  // Only the first 16 bytes count, as clean's dedupe always compared.
  const tail = Buffer.from(other);
  tail[20] = 1;
  assert.equal(set.add(tail), false);
  assert.equal(set.size, 50_003);
});
