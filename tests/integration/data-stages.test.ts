/**
 * The data stages as activities against the real S3 server and PostgreSQL (no workflow): bad records are
 * quarantined with reasons and counted, cleaning reports each rule (the quality rules too, when a spec turns them
 * on), and sources outside the allowed places
 * are refused with a non-retryable error.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, TrainerSlots } from '@tempered/activities';
import { generateDemoData, type DemoDataSummary } from '@tempered/examples';
import type { CleanResult, IngestResult, TokenizeResult } from '@tempered/contract';
import { cfg, db, demoSpec, store, trainerServer, uniqueId } from '../support';

describe('data stages on the real stack', () => {
  const database = db();
  // Without the stage cache: these tests check what the stages compute (a second ingest must recompute).
  const activities = createActivities({ cfg, db: database, store: store(), slots: TrainerSlots.unlimited(), stageCache: false, trainerServer });
  const env = new MockActivityEnvironment();
  const runId = uniqueId('int');
  const dataDir = path.join(cfg.dataDir, 'uploads', 'integration');
  let summary: DemoDataSummary;

  before(async () => {
    summary = generateDemoData(dataDir, { records: 200 });
    await database.insertInto('runs').values({ id: runId, name: 'int', spec: '{}', status: 'running', requested_by: 'test' }).execute();
  });
  after(() => database.destroy());

  const spec = () => {
    const s = demoSpec();
    s.data.sources = [
      { uri: 'train.jsonl', encoding: 'utf-8' },
      { uri: 'extra.csv', encoding: 'shift_jis' },
    ];
    return s;
  };

  let ingested: IngestResult;

  test('ingest quarantines a malformed JSONL line and an unreadable CSV row, and counts add up', async () => {
    ingested = await env.run(activities.ingest, { runId, spec: spec(), specDir: dataDir });
    const expectedQuarantine = summary.totals.malformed;
    assert.equal(ingested.counts.input, summary.train.lines + summary.extra.rows);
    assert.equal(ingested.counts.quarantined, expectedQuarantine);
    assert.equal(ingested.counts.kept + ingested.counts.quarantined, ingested.counts.input);

    const quarantined = (await store().getBytes(ingested.quarantine.uri)).toString('utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(quarantined.length, expectedQuarantine);
    for (const q of quarantined) assert.ok(q.reason && q.source && q.line > 0, JSON.stringify(q));
    assert.deepEqual(
      quarantined.filter((q) => q.source === 'train.jsonl').map((q) => q.line),
      summary.train.malformedLines,
    );
    assert.deepEqual(
      quarantined.filter((q) => q.source === 'extra.csv').map((q) => q.line).sort((a, b) => a - b),
      [...summary.extra.wrongColumnRows, ...summary.extra.invalidByteRows].sort((a, b) => a - b),
    );

    const version = await database.selectFrom('dataset_versions').selectAll().where('id', '=', ingested.datasetVersionId).executeTakeFirstOrThrow();
    assert.equal(version.kept_count, ingested.counts.kept);
    assert.equal(version.quarantined_count, ingested.counts.quarantined);
  });

  test('the same data gives the same dataset version', async () => {
    const again: IngestResult = await env.run(activities.ingest, { runId, spec: spec(), specDir: dataDir });
    assert.equal(again.datasetVersionId, ingested.datasetVersionId);
    assert.equal(again.dataset.sha256, ingested.dataset.sha256);
  });

  test('clean reports what each rule removed or changed', async () => {
    const cleaned: CleanResult = await env.run(activities.clean, { runId, spec: spec(), dataset: ingested.dataset });
    const report = JSON.parse((await store().getBytes(cleaned.report.uri)).toString('utf8'));
    assert.equal(report.kept + Object.values(report.removed as Record<string, number>).reduce((a, b) => a + b, 0), report.input);
    assert.ok(report.removed.duplicate >= summary.train.duplicates, `duplicates removed: ${report.removed.duplicate}`);
    assert.ok(report.changed.email >= 1 && report.changed.phone >= 1, JSON.stringify(report.changed));
    assert.ok(report.changed.nfkc >= 1, 'the Shift_JIS rows use full-width forms');
    const text = (await store().getBytes(cleaned.cleaned.uri)).toString('utf8');
    assert.ok(!text.includes('@example.com'), 'no e-mail address survives cleaning');
  });

  test("clean runs the quality rules the spec turns on and reports each, with the languages counted", async () => {
    const file = path.join(dataDir, 'quality.jsonl');
    const rows = [
      { id: 'en', prompt: 'What is the capital of France?', response: 'The capital of France is Paris, a city on the Seine.' },
      { id: 'zh', prompt: '法国的首都是哪里？', response: '法国的首都是巴黎，位于塞纳河畔。' },
      { id: 'en-near', prompt: 'What is the capital of France?', response: 'The capital of France is Paris, a big city on the Seine.' },
      { id: 'en-blocked', prompt: 'Tell me a joke.', response: 'Why did the bullshit cross the road?' },
      { id: 'ja', prompt: '日本の首都はどこですか？', response: '日本の首都は東京です。' },
      { id: 'zh-copy', prompt: '法国的首都是哪里？', response: '法国的首都是巴黎，位于塞纳河畔。' },
    ];
    writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const s = spec();
    s.data.sources = [{ uri: 'quality.jsonl', encoding: 'utf-8' }];
    s.data.fields = { ...s.data.fields, key: 'id' };
    s.clean = { ...s.clean, languages: ['en', 'zh'], blocklist: { languages: ['en'], words: [] }, dedupe: 'near' };
    const ingestedHere: IngestResult = await env.run(activities.ingest, { runId, spec: s, specDir: dataDir });
    const cleanedHere: CleanResult = await env.run(activities.clean, { runId, spec: s, dataset: ingestedHere.dataset });
    const report = JSON.parse((await store().getBytes(cleanedHere.report.uri)).toString('utf8'));
    assert.deepEqual(
      { input: report.input, kept: report.kept, removed: report.removed, languages: report.languages, clusters: report.nearDuplicates.examples },
      {
        input: 6,
        kept: 2,
        removed: { empty: 0, tooShort: 0, tooLong: 0, duplicate: 1, language: 1, blocked: 1, nearDuplicate: 1 },
        languages: { en: 3, zh: 2, ja: 1 },
        clusters: [{ kept: 'en', removed: [{ key: 'en-near', similarity: report.nearDuplicates.examples[0]?.removed[0]?.similarity }] }],
      },
    );
    const kept = (await store().getBytes(cleanedHere.cleaned.uri)).toString('utf8').trim().split('\n').map((l) => JSON.parse(l).key);
    assert.deepEqual(kept, ['en', 'zh']);
  });

  // Regression: "\ud800" passed ingest and clean, then the tokenizer could not encode it, and the run failed
  // after three attempts because of one record.
  test('a record with a lone UTF-16 surrogate is quarantined with its reason, and tokenize succeeds on the rest', async () => {
    const file = path.join(dataDir, 'lone-surrogate.jsonl');
    const good = Array.from({ length: 6 }, (_, i) => JSON.stringify({ prompt: `reverse ${i} ${i + 1}`, response: `${i + 1} ${i}` }));
    writeFileSync(file, [good[0], String.raw`{"prompt": "hello \ud800 there", "response": "ok"}`, ...good.slice(1)].join('\n') + '\n');
    const s = spec();
    s.data.sources = [{ uri: 'lone-surrogate.jsonl', encoding: 'utf-8' }];
    const ingestedHere: IngestResult = await env.run(activities.ingest, { runId, spec: s, specDir: dataDir });
    assert.deepEqual(ingestedHere.counts, { input: 7, kept: 6, quarantined: 1 });
    const [entry] = (await store().getBytes(ingestedHere.quarantine.uri)).toString('utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(
      { line: entry.line, reason: entry.reason },
      { line: 2, reason: String.raw`invalid Unicode: "prompt" holds a lone UTF-16 surrogate (\ud800) at position 6, which has no UTF-8 form` },
    );
    const cleanedHere: CleanResult = await env.run(activities.clean, { runId, spec: s, dataset: ingestedHere.dataset });
    const tokenized: TokenizeResult = await env.run(activities.tokenize, { runId, spec: s, cleaned: cleanedHere.cleaned });
    assert.equal(tokenized.counts.records, 6);
  });

  test('a gzip-compressed Parquet file, or an unknown extension, is refused as bad input naming the source', async () => {
    for (const [uri, message] of [
      ['rows.parquet.gz', /data\.sources\.0: a Parquet file compresses its own pages/],
      ['rows.xlsx', /data\.sources\.0: cannot tell the format of "rows\.xlsx"/],
    ] as const) {
      const s = spec();
      s.data.sources = [{ uri, encoding: 'utf-8' }];
      await assert.rejects(env.run(activities.ingest, { runId, spec: s, specDir: dataDir }), (err: unknown) => err instanceof ApplicationFailure && err.nonRetryable && message.test(err.message), uri);
    }
  });

  test('a local path outside the allowed roots is refused, not read', async () => {
    const outside = path.join(tmpdir(), `${uniqueId('outside')}.jsonl`);
    writeFileSync(outside, '{"prompt":"a","response":"b"}\n');
    const s = spec();
    s.data.sources = [{ uri: outside, encoding: 'utf-8' }];
    await assert.rejects(env.run(activities.ingest, { runId, spec: s }), (err: unknown) => {
      return err instanceof ApplicationFailure && err.nonRetryable && /outside the allowed local data roots/.test(err.message);
    });
  });

  test('the data directory (credentials) is not a data source, even though uploads below it are', async () => {
    const s = spec();
    s.data.sources = [{ uri: path.join(cfg.dataDir, 'credentials.json'), format: 'jsonl', encoding: 'utf-8' }];
    await assert.rejects(env.run(activities.ingest, { runId, spec: s }), (err: unknown) => err instanceof ApplicationFailure && err.nonRetryable);
  });

  test('an S3 URI outside the artifact bucket or prefix is refused', async () => {
    for (const uri of ['s3://someone-elses-bucket/data.jsonl', `s3://${cfg.s3.bucket}/not-our-prefix/data.jsonl`, `s3://${cfg.s3.bucket}/${cfg.s3.prefix}../x.jsonl`]) {
      const s = spec();
      s.data.sources = [{ uri, encoding: 'utf-8' }];
      await assert.rejects(env.run(activities.ingest, { runId, spec: s }), (err: unknown) => err instanceof ApplicationFailure && err.nonRetryable, uri);
    }
  });
});
