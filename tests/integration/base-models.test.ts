/**
 * The base-model catalog against the real S3 server, PostgreSQL and API: registration stores a model.tar once
 * and its manifest as the row, `GET /api/base-models` lists it with the versions fine-tuned from it,
 * `model.base: {name}` stages exactly the registered bytes (an unknown name is refused, naming the known ones),
 * and a checkpoint fine-tuned from a named base has `base_model:<name>` in its lineage. The base models are the
 * test's own (a tar of a few small files; a tiny model the trainer made), never the bootstrap's real one.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, TrainerSlots, stageBaseModel, type StagedBaseModel } from '@tempered/activities';
import { ancestors, node, registerBaseModels, type BaseModelStore } from '@tempered/db';
import { generateDemoData } from '@tempered/examples';
import type { PipelineSpec } from '@tempered/spec';
import type { CleanResult, IngestResult, SplitResult, TokenizeResult, TrainResult, ValidateResult } from '@tempered/contract';
import { apiCall, cfg, db, demoSpec, store, trainerServer, uniqueId } from '../support';

/** A base-model folder as the bootstrap writes it: `model/`, `model.tar` and `manifest.json`. */
function writeBaseModel(root: string, name: string, tar?: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const folder = path.join(root, name);
  mkdirSync(path.join(folder, 'model'), { recursive: true });
  if (tar) copyFileSync(tar, path.join(folder, 'model.tar'));
  else {
    writeFileSync(path.join(folder, 'model', 'config.json'), JSON.stringify({ model_type: 'llama', name }));
    writeFileSync(path.join(folder, 'model', 'weights.bin'), Buffer.from(name.repeat(500)));
    execFileSync('tar', ['-cf', path.join(folder, 'model.tar'), '-C', path.join(folder, 'model'), '.']);
  }
  const bytes = readFileSync(path.join(folder, 'model.tar'));
  const manifest = {
    name,
    architecture: 'LlamaForCausalLM',
    model_type: 'llama',
    parameters: 134_515_008,
    tied_embeddings: true,
    context_length: 2048,
    vocab_size: 49152,
    eos_token: '<|im_end|>',
    license: 'Apache-2.0',
    source: 'a test fixture',
    sha256: createHash('sha256').update(bytes).digest('hex'),
    bytes: bytes.length,
    check: { prompt: 'reverse 1 2', answer: '2 1' },
    ...overrides,
  };
  writeFileSync(path.join(folder, 'manifest.json'), JSON.stringify(manifest, null, 2));
  return manifest;
}

const sha256Of = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

describe('base-model catalog', { timeout: 10 * 60_000 }, () => {
  const database = db();
  const s3 = store();
  const root = mkdtempSync(path.join(tmpdir(), 'tempered-base-models-'));
  // The activities see the test's own catalog folder, never the bootstrap's.
  const deps = { cfg: { ...cfg, baseModelsDir: root }, db: database, store: s3, slots: TrainerSlots.unlimited(), trainerServer };
  const env = new MockActivityEnvironment();
  const runId = uniqueId('base');
  const name = uniqueId('tiny');
  const names = [name];
  let manifest: Record<string, unknown>;
  let puts = 0;
  // The store as registration sees it, counting uploads.
  const counting: BaseModelStore = { putFile: (...a) => (puts++, s3.putFile(...a)), exists: (uri) => s3.exists(uri) };
  const withBase = (base: PipelineSpec['model']['base']): PipelineSpec => {
    const s = demoSpec();
    s.model.base = base;
    return s;
  };
  /** `stageBaseModel` as tokenize and train call it, in an activity context. */
  const stage = async (base: PipelineSpec['model']['base'], dir = root): Promise<StagedBaseModel> => {
    const staged = (await env.run(stageBaseModel, deps, runId, withBase(base), undefined, dir)) as StagedBaseModel | undefined;
    assert.ok(staged, 'a spec with model.base stages a model');
    return staged;
  };

  before(async () => {
    manifest = writeBaseModel(root, name);
    await database.insertInto('runs').values({ id: runId, name: 'base', spec: '{}', status: 'running', requested_by: 'test' }).execute();
  });
  after(async () => {
    await database.deleteFrom('base_models').where('name', 'in', names).execute();
    await database.destroy();
    rmSync(root, { recursive: true, force: true });
  });

  test('registration uploads a model.tar once and keeps its manifest as the row', async () => {
    const broken = uniqueId('broken');
    writeBaseModel(root, broken, undefined, { sha256: '0'.repeat(64) });
    const first = await registerBaseModels(database, counting, root);
    assert.deepEqual(first.registered, [name]);
    assert.equal(puts, 2, 'both model.tars hashed and offered to the store');
    assert.equal(first.skipped.length, 1, JSON.stringify(first.skipped));
    assert.match(first.skipped[0].reason, /model\.tar has sha256 [0-9a-f]{64} .* says 0{64}/);

    const rows = await database.selectFrom('base_models').selectAll().where('name', 'in', [name, broken]).execute();
    assert.equal(rows.length, 1, 'the model.tar that does not match its manifest is left out');
    const row = rows[0];
    for (const k of ['architecture', 'model_type', 'parameters', 'context_length', 'license', 'source', 'sha256', 'bytes'] as const) {
      assert.equal(row[k], manifest[k], k);
    }
    assert.deepEqual(row.manifest, manifest, 'the whole manifest is kept');
    assert.match(row.uri, new RegExp(`^s3://${cfg.s3.bucket}/${cfg.s3.prefix}artifacts/${row.sha256}/model\\.tar$`), 'content-addressed');
    assert.equal(createHash('sha256').update(await s3.getBytes(row.uri)).digest('hex'), manifest.sha256);

    rmSync(path.join(root, broken), { recursive: true });
    puts = 0;
    const second = await registerBaseModels(database, counting, root);
    assert.deepEqual(second, { registered: [], unchanged: [name], skipped: [] });
    assert.equal(puts, 0, 'nothing uploaded the second time');
    const again = await database.selectFrom('base_models').selectAll().where('name', '=', name).execute();
    assert.equal(again.length, 1);
    assert.equal(again[0].updated_at.getTime(), row.updated_at.getTime(), 'the row is untouched');
  });

  test('GET /api/base-models lists the catalog to any signed-in user', async () => {
    assert.equal((await apiCall('GET', '/api/base-models')).status, 401);
    const res = await apiCall('GET', '/api/base-models', 'operator');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const entry = res.body.baseModels.find((b: any) => b.name === name);
    assert.ok(entry, `${name} in ${JSON.stringify(res.body.baseModels.map((b: any) => b.name))}`);
    for (const k of ['architecture', 'model_type', 'parameters', 'context_length', 'license', 'source', 'sha256', 'bytes']) assert.equal(entry[k], manifest[k], k);
    assert.deepEqual(entry.fineTuned, []);
    const openapi = await apiCall('GET', '/api/openapi.json', 'operator');
    assert.ok(openapi.body.paths['/api/base-models']?.get, 'in the OpenAPI description');
  });

  test('model.base {name} stages the exact registered bytes, downloaded once per host', async () => {
    const staged = await stage({ name });
    assert.equal(sha256Of(staged.path), manifest.sha256);
    assert.equal(staged.digest, manifest.sha256);
    assert.equal(staged.ref?.sha256, manifest.sha256);
    assert.equal(staged.name, name);
    const edges = await database.selectFrom('lineage_edges').selectAll().where('parent', '=', node.baseModel(name)).execute();
    assert.deepEqual(edges.map((e) => [e.child, e.relation]), [[node.artifact({ sha256: String(manifest.sha256) }), 'packaged-as']]);

    const { mtimeMs } = statSync(staged.path);
    const again = await stage({ name });
    assert.equal(again.path, staged.path);
    assert.equal(statSync(again.path).mtimeMs, mtimeMs, 'the cached copy is reused');

    // The same tar by URI gives the same digest, so the stage cache treats both alike.
    const row = await database.selectFrom('base_models').select('uri').where('name', '=', name).executeTakeFirstOrThrow();
    const byUri = await stage({ uri: row.uri }, path.join(root, 'scratch'));
    assert.equal(byUri.digest, manifest.sha256);
  });

  test('a name the catalog lacks is registered from this host first', async () => {
    const late = uniqueId('late');
    names.push(late);
    const lateManifest = writeBaseModel(root, late);
    const staged = await stage({ name: late });
    assert.equal(sha256Of(staged.path), lateManifest.sha256);
    assert.ok(await database.selectFrom('base_models').select('name').where('name', '=', late).executeTakeFirst());
  });

  test('an unknown name is bad input that lists the known names', async () => {
    await assert.rejects(stage({ name: 'no-such-model' }), (err: unknown) => {
      assert.ok(err instanceof ApplicationFailure, String(err));
      assert.equal(err.type, 'BadInput');
      assert.equal(err.nonRetryable, true);
      assert.match(err.message, /no base model "no-such-model" in the catalog; known: .+/);
      for (const n of names) assert.ok(err.message.includes(n), `${n} listed in: ${err.message}`);
      return true;
    });
  });

  test('a checkpoint fine-tuned from a named base, and its model version, descend from the catalog entry', async () => {
    // A real (tiny) model to fine-tune: the demo pipeline's stages up to validate, a few training steps.
    const activities = createActivities(deps);
    const dataDir = path.join(cfg.dataDir, 'uploads', 'base-models');
    generateDemoData(dataDir, { records: 200 });
    const s = demoSpec();
    s.data.sources = [{ uri: 'train.jsonl', encoding: 'utf-8' }];
    s.train = { ...s.train, steps: 20, checkpointEvery: 20, batchSize: 16 };
    const ingested: IngestResult = await env.run(activities.ingest, { runId, spec: s, specDir: dataDir });
    const cleaned: CleanResult = await env.run(activities.clean, { runId, spec: s, dataset: ingested.dataset });
    const tokenized: TokenizeResult = await env.run(activities.tokenize, { runId, spec: s, cleaned: cleaned.cleaned });
    const splits: SplitResult = await env.run(activities.split, { runId, spec: s, encoded: tokenized.encoded });
    const trained: TrainResult = await env.run(activities.train, { runId, spec: s, trainShard: splits.train, tokenizer: tokenized.tokenizer });
    const validated: ValidateResult = await env.run(activities.validate, { runId, spec: s, checkpoints: trained.checkpoints, validationShard: splits.validation, tokenizer: tokenized.tokenizer });
    const tar = path.join(root, 'trained.tar');
    await s3.download(validated.best, tar);
    const tiny = uniqueId('tiny-gpt2');
    names.push(tiny);
    writeBaseModel(root, tiny, tar, { architecture: 'GPT2LMHeadModel', model_type: 'gpt2' });
    rmSync(tar);

    // Fine-tuning it by name (registered lazily by the stage itself).
    const ft = { ...s, model: { ...s.model, base: { name: tiny } }, train: { ...s.train, steps: 4, checkpointEvery: 4 } };
    const ftRun = uniqueId('base-ft');
    await database.insertInto('runs').values({ id: ftRun, name: 'base-ft', spec: '{}', status: 'running', requested_by: 'test' }).execute();
    const tok: TokenizeResult = await env.run(activities.tokenize, { runId: ftRun, spec: ft, cleaned: cleaned.cleaned });
    const sp: SplitResult = await env.run(activities.split, { runId: ftRun, spec: ft, encoded: tok.encoded });
    const fine: TrainResult = await env.run(activities.train, { runId: ftRun, spec: ft, trainShard: sp.train, tokenizer: tok.tokenizer });
    const up = await ancestors(database, node.artifact(fine.model));
    const row = await database.selectFrom('base_models').selectAll().where('name', '=', tiny).executeTakeFirstOrThrow();
    assert.ok(up.some((e) => e.parent === node.artifact(row) && e.relation === 'fine-tuned-from'), JSON.stringify(up));
    assert.ok(up.some((e) => e.parent === node.baseModel(tiny) && e.relation === 'packaged-as'), JSON.stringify(up));

    // A model version of that checkpoint (as validate and deploy would record it): its lineage reaches the
    // catalog entry by name, and the catalog lists it as fine-tuned from the base.
    const versionId = `${ftRun}-v1`;
    await database
      .insertInto('model_versions')
      .values({ id: versionId, name: ftRun, version: 1, run_id: ftRun, model_uri: fine.model.uri, sha256: fine.model.sha256, metrics: '{}' })
      .execute();
    await database.insertInto('lineage_edges').values({ parent: node.artifact(fine.model), child: node.modelVersion(versionId), relation: 'registered-as', run_id: ftRun }).execute();
    const lineage = await apiCall('GET', `/api/models/${versionId}/lineage`, 'operator');
    assert.equal(lineage.status, 200, JSON.stringify(lineage.body));
    assert.ok(lineage.body.edges.some((e: any) => e.parent === node.baseModel(tiny)), JSON.stringify(lineage.body.edges));
    const catalog = await apiCall('GET', '/api/base-models', 'operator');
    const entry = catalog.body.baseModels.find((b: any) => b.name === tiny);
    // Among others, on a stack where an earlier run made the same bytes (training is deterministic, the stage
    // cache reuses results): the same tar is the same base, whatever its name.
    assert.ok(entry.fineTuned.some((v: any) => v.id === versionId && v.name === ftRun && v.version === 1), JSON.stringify(entry.fineTuned));
  });
});
