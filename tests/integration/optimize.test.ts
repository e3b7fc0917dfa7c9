/**
 * The optimize stage on the real stack's database and S3, with the Python trainer and llama.cpp: a tiny model of the
 * demo task goes through the test activity (held-out split and a suite), then optimize exports it to GGUF and
 * scores every type on the same shards. The f16 file scores as the model does (its loss within 1%), the quantized
 * files are smaller, every figure stands beside the model's with its change, and the files are the run's artifacts
 * that a llamacpp deployment then serves without exporting again. A served type that loses more than
 * optimize.tolerance fails the stage's gate naming the metric; specs that cannot optimize are refused at the field.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, isModelServer, TrainerSlots } from '@tempered/activities';
import type { ArtifactRef, DeployResult, OptimizeResult, TestResult } from '@tempered/contract';
import { runGgufArtifacts } from '@tempered/db';
import { type PipelineSpec, validateSpec } from '@tempered/spec';
import { parse } from 'yaml';
import { cfg, db, repoRoot, reversalRecords, store, trainTinyModel, trainerCommand, trainerServer, uniqueId } from '../support';

describe('the optimize stage: GGUF exports scored against the model they came from', () => {
  const database = db();
  const dir = mkdtempSync(path.join(tmpdir(), 'tempered-optimize-'));
  const activities = createActivities({ cfg, db: database, store: store(), slots: TrainerSlots.unlimited(), trainerServer });
  const env = () => new MockActivityEnvironment({ heartbeatTimeoutMs: 300_000 });
  const runId = uniqueId('optimize-run');
  let spec: PipelineSpec;
  let inputs: { model: ArtifactRef; baseline: ArtifactRef; testShard: ArtifactRef; tokenizer: ArtifactRef };
  let tested: TestResult;
  let optimized: OptimizeResult;
  let deployed: DeployResult | undefined;

  /** The demo spec with a suite, optimize, and llama.cpp serving q8_0. */
  function specWith(changes: Record<string, unknown>): unknown {
    const raw = parse(readFileSync(path.join(repoRoot, 'examples', 'demo', 'pipeline.yaml'), 'utf8'));
    return { ...raw, name: uniqueId('optimize'), ...changes };
  }

  before(async () => {
    const sft = await trainTinyModel(dir, { n_layer: 1, n_head: 2, n_embd: 64, context_length: 32 });
    const exported = await trainerCommand('export', { checkpoint: sft.checkpoints.at(-1), output_dir: path.join(dir, 'trained') }, dir);
    // In the uploads area, an allowed local root.
    const suiteFile = path.join(cfg.dataDir, 'uploads', uniqueId('optimize-suite'), 'suite.jsonl');
    mkdirSync(path.dirname(suiteFile), { recursive: true });
    writeFileSync(suiteFile, `${reversalRecords(340).slice(300).map((r) => JSON.stringify({ prompt: r.prompt, response: r.response })).join('\n')}\n`);
    const raw = specWith({
      test: { maxNewTokens: 8, suites: [{ name: 'more', source: { uri: suiteFile }, metrics: ['exact_match', 'chrf', 'perplexity', 'unsafe_rate'] }] },
      optimize: { types: ['f16', 'q8_0', 'q4_k_m'], tolerance: 0.02 },
      deploy: { engine: 'llamacpp', quantization: 'q8_0', smokePrompt: 'reverse 1 2 3' },
    });
    spec = validateSpec(raw);
    const s = store();
    inputs = {
      model: await s.putFile(exported.model_tar, 'model', 'model.tar'),
      baseline: await s.putFile(sft.checkpoints[0], 'checkpoint', 'baseline.pt'),
      testShard: await s.putFile(path.join(dir, 'tok', 'encoded.shard'), 'shard', 'test.shard'),
      tokenizer: await s.putFile(path.join(dir, 'tok', 'tokenizer.json'), 'tokenizer', 'tokenizer.json'),
    };
    await database.insertInto('runs').values({ id: runId, name: spec.name, spec: JSON.stringify(spec), status: 'running', requested_by: 'optimize-test' }).execute();
    tested = (await env().run(activities.test, { runId, spec, ...inputs })) as TestResult;
  });

  after(async () => {
    if (deployed) {
      const row = await database.selectFrom('deployments').select('pid').where('id', '=', deployed.deploymentId).executeTakeFirst();
      await database.updateTable('deployments').set({ status: 'stopped' }).where('id', '=', deployed.deploymentId).execute();
      if (row?.pid && isModelServer(row.pid)) process.kill(-row.pid, 'SIGTERM');
    }
    await database.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every type is scored on the held-out split and the suite, beside the model\'s own figures', { timeout: 600_000 }, async () => {
    optimized = (await env().run(activities.optimize, { runId, spec, model: inputs.model, testShard: inputs.testShard, tested })) as OptimizeResult;
    assert.equal(optimized.tolerance, 0.02);
    assert.equal(optimized.deploys, 'q8_0');
    assert.deepEqual(optimized.forms.map((f) => f.type), ['f16', 'q8_0', 'q4_k_m']);
    const [f16, q8, q4] = optimized.forms;
    assert.ok(f16.bytes > q8.bytes && q8.bytes > q4.bytes, optimized.forms.map((f) => `${f.type} ${f.bytes}`).join(', '));
    for (const form of optimized.forms) {
      assert.ok(form.tokensPerSec! > 0, `${form.type} tokens/s ${form.tokensPerSec}`);
      assert.deepEqual(
        form.metrics.map((m) => `${m.scope}.${m.metric}`),
        ['test.exact_match', 'test.perplexity', 'more.exact_match', 'more.chrf', 'more.unsafe_rate', 'more.perplexity'],
      );
      for (const m of form.metrics) {
        assert.ok(Math.abs(m.change - (m.value - m.reference)) < 1e-12, JSON.stringify(m));
        assert.equal(m.within, m.loss <= 0.02 + 1e-9, JSON.stringify(m));
        if (m.metric !== 'perplexity') assert.equal(m.interval?.n, m.scope === 'test' ? tested.intervals!.exactMatch.n : tested.suites![0].metrics.exact_match.n, JSON.stringify(m));
        // Exact match is paired record by record with the model's stored answers: the interval of the change.
        if (m.metric === 'exact_match') {
          const ci = m.changeInterval!;
          assert.ok(ci.n === m.interval!.n && Math.abs(ci.value - m.change) < 1e-9 && ci.low <= ci.value && ci.value <= ci.high, JSON.stringify(m));
        } else assert.equal(m.changeInterval, undefined, JSON.stringify(m));
      }
      assert.equal(form.withinTolerance, form.metrics.every((m) => m.within));
    }
    // The references are the test stage's figures of the model itself.
    const ref = (scope: string, metric: string) => f16.metrics.find((m) => m.scope === scope && m.metric === metric)!;
    assert.equal(ref('test', 'exact_match').reference, tested.exactMatch);
    assert.equal(ref('test', 'perplexity').reference, tested.perplexity);
    assert.equal(ref('more', 'chrf').reference, tested.suites![0].metrics.chrf.value);
    // f16 is the same model up to rounding: its loss within 1%, its answers (nearly) the same.
    const ppl = ref('test', 'perplexity');
    assert.ok(Math.abs(ppl.loss) < 0.01, `f16 perplexity ${ppl.value} against ${ppl.reference}`);
    assert.ok(Math.abs(ref('test', 'exact_match').change) <= 0.05, JSON.stringify(ref('test', 'exact_match')));
    assert.equal(ref('more', 'unsafe_rate').value, 0);

    const rows = await database.selectFrom('metrics').select(['name', 'value']).where('run_id', '=', runId).where('stage', '=', 'optimize').execute();
    const byName = new Map(rows.map((r) => [r.name, Number(r.value)]));
    assert.equal(byName.get('optimize_q8_0_bytes'), q8.bytes);
    assert.equal(byName.get('optimize_q4_k_m_suite_more_chrf'), q4.metrics.find((m) => m.scope === 'more' && m.metric === 'chrf')!.value);
    const files = await runGgufArtifacts(database, runId);
    assert.deepEqual(Object.keys(files).sort(), ['f16', 'q4_k_m', 'q8_0']);
    assert.equal(files.q8_0.sha256, q8.file.sha256);
  });

  test('a served type that loses more than the tolerance fails the gate, naming the metric; the files are not exported again', { timeout: 600_000 }, async () => {
    // A reference no GGUF can reach: perplexity 1, a model that is never unsure.
    const perfect: TestResult = { ...tested, perplexity: 1 };
    await assert.rejects(env().run(activities.optimize, { runId, spec, model: inputs.model, testShard: inputs.testShard, tested: perfect }), (err: any) => {
      assert.equal(err.type, 'GateFailed');
      assert.match(err.message, /^optimize gate failed: llama\.cpp would serve q8_0, which loses [\d.]+% of the held-out split's perplexity \([\d.]+ against the model's 1\.000\), more than optimize\.tolerance 0\.02: .*deploy\.engine tempered/);
      return true;
    });
    const rows = await database.selectFrom('artifacts').select('id').where('run_id', '=', runId).where('uri', 'like', '%/model-%.gguf').execute();
    assert.equal(rows.length, 3, 'the second attempt reused the stored files');
  });

  test('the deploy serves the file optimize scored, without exporting again', { timeout: 300_000 }, async () => {
    deployed = (await env().run(activities.deploy, { runId, spec, model: inputs.model, datasetVersionId: 'ds-optimize-test', metrics: tested, approver: 'optimize-test' })) as DeployResult;
    const row = await database.selectFrom('deployments').selectAll().where('id', '=', deployed.deploymentId).executeTakeFirstOrThrow();
    const args = readFileSync(`/proc/${row.pid}/cmdline`, 'utf8').split('\0');
    const served = readFileSync(args[args.indexOf('--model') + 1]);
    assert.equal(served.length, optimized.forms[1].bytes);
    const deployStage = await database.selectFrom('artifacts').select('id').where('run_id', '=', runId).where('stage', '=', 'deploy').where('uri', 'like', '%.gguf').execute();
    assert.equal(deployStage.length, 0);
  });

  test('specs that cannot optimize are refused at the field', () => {
    const refused = (changes: Record<string, unknown>) => {
      try {
        validateSpec(specWith(changes));
      } catch (err: any) {
        return err.issues as Array<{ path: string; message: string }>;
      }
      assert.fail('accepted');
    };
    const notScored = refused({ optimize: { types: ['f16'] }, deploy: { engine: 'llamacpp', quantization: 'q4_k_m' } });
    assert.ok(notScored.some((i) => i.path === 'deploy.quantization' && /q4_k_m, which optimize\.types \(f16\) does not score/.test(i.message)), JSON.stringify(notScored));
    const repeated = refused({ optimize: { types: ['q8_0', 'q8_0'] } });
    assert.ok(repeated.some((i) => i.path === 'optimize.types'), JSON.stringify(repeated));
    const tolerance = refused({ optimize: { tolerance: 2 } });
    assert.ok(tolerance.some((i) => i.path === 'optimize.tolerance'), JSON.stringify(tolerance));
    const classifier = refused({ model: { type: 'tfidf-logreg' }, test: { choices: ['a', 'b'] }, rlhf: { method: 'none' }, optimize: {} });
    assert.ok(classifier.some((i) => i.path === 'optimize'), JSON.stringify(classifier));
  });
});
