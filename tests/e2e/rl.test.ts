/**
 * RLHF by reinforcement learning on the real stack: the pipeline with `rlhf.method: rl` trains a reward model
 * on the preference pairs and then the policy against it (GRPO, KL penalty to the validated model), and the
 * run reaches its gate with the figures recorded. Small settings: this checks the plumbing between the
 * activities and the trainer; the trainer's own tests and scripts/rlhf_effect.py measure the effect.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { generateDemoData, prng } from '@tempered/examples';
import { apiCall, cfg, db, demoSpec, waitFor } from '../support';

const database = db();
after(() => database.destroy());

/** A judged suite: JUDGED_RECORDS reversal tasks by the demo's own rule, seeded. */
const JUDGED_RECORDS = 16;
function writeJudgedSuite(dir: string): string {
  const next = prng(11);
  const rows = Array.from({ length: JUDGED_RECORDS }, (_, i) => {
    const digits = Array.from({ length: 3 + (i % 3) }, () => Math.floor(next() * 10));
    return JSON.stringify({ key: `j${i}`, prompt: `reverse ${digits.join(' ')}`, response: [...digits].reverse().join(' ') });
  });
  const file = path.join(dir, 'judged.jsonl');
  writeFileSync(file, rows.join('\n') + '\n');
  return file;
}

test('rlhf method rl: reward model, then RL, then the gate', { timeout: 15 * 60_000 }, async () => {
  const dataDir = path.join(cfg.dataDir, 'uploads', 'rl');
  generateDemoData(dataDir, { records: 1000 });
  const spec = demoSpec();
  spec.data.sources = [{ uri: path.join(dataDir, 'train.jsonl'), encoding: 'utf-8' }];
  spec.rlhf = {
    ...spec.rlhf,
    method: 'rl',
    preferences: { uri: path.join(dataDir, 'preferences.jsonl'), encoding: 'utf-8' },
    steps: 8,
    batchSize: 8,
    numGenerations: 4,
    reward: { steps: 40, learningRate: 1e-3 },
  };
  spec.test.minExactMatch = undefined;
  // A name of its own, so no version of it serves: the judged suite is judged against the untrained model.
  spec.name = `rl-judged-${Date.now().toString(36)}`;
  spec.test.suites = [{ name: 'judged', source: { uri: writeJudgedSuite(dataDir), encoding: 'utf-8' }, metrics: ['exact_match', 'win_rate'], judge: 'reward' }];
  const started = await apiCall('POST', '/api/runs', 'operator', { spec });
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const runId = started.body.runId;

  const detail = await waitFor('the gate', 15 * 60_000, async () => {
    const d = (await apiCall('GET', `/api/runs/${runId}`, 'operator')).body;
    if (d.run.status === 'failed') throw new Error(`run failed: ${d.run.error}`);
    return d.run.status === 'waiting-approval' ? d : undefined;
  }, 2000);

  const rlhf = detail.stages.find((s: any) => s.name === 'rlhf');
  assert.equal(rlhf.status, 'completed');
  assert.equal(rlhf.summary.method, 'rl');
  assert.ok(rlhf.summary.rewardAccuracy > 0.5, `reward model accuracy ${rlhf.summary.rewardAccuracy}`);
  assert.ok((detail.metrics['rlhf.reward'] ?? []).length >= 8, 'a reward per RL step');
  assert.ok((detail.metrics['rlhf.reward_model_loss'] ?? []).length > 0, 'the reward model loss curve');
  const kinds = detail.artifacts.filter((a: any) => a.stage === 'rlhf').map((a: any) => a.kind).sort();
  assert.deepEqual(kinds, ['model', 'preferences', 'reward-model']);

  // The judged suite, judged by this run's reward model. Whether that judge is right is the trainer's tests' to
  // show (tests/test_judge.py: a known winner above 0.5, its interval excluding 0.5); here, that every pair is
  // judged in both orders, counted, and stored with its verdicts.
  const [judged] = detail.stages.find((s: any) => s.name === 'test').summary.suites;
  const j = judged.judged;
  assert.equal(judged.examples, JUDGED_RECORDS, JSON.stringify(judged));
  assert.deepEqual([j.judge, j.against, j.pairs], ['reward', { kind: 'untrained' }, JUDGED_RECORDS], JSON.stringify(j));
  assert.equal(j.wins + j.losses + j.ties + j.noVerdict, JUDGED_RECORDS);
  assert.equal(j.noVerdict, 0, 'a reward model scores every answer: it always has a verdict');
  const rate = judged.metrics.win_rate;
  assert.ok(rate.n === JUDGED_RECORDS && Math.abs(rate.value - (j.wins + 0.5 * (j.ties + j.noVerdict)) / JUDGED_RECORDS) < 1e-9, JSON.stringify(rate));
  assert.ok(rate.low <= rate.value && rate.value <= rate.high, JSON.stringify(rate));
  const answers = (await apiCall('GET', `/api/runs/${runId}/answers?filter=judge-disagreed&limit=500`, 'operator')).body;
  assert.equal(answers.counts['judge-disagreed'], j.disagreed);
  assert.ok(answers.answers.every((a: any) => a.suite === 'judged' && a.judge.disagreed === true && ['win', 'loss', 'tie'].includes(a.judge.outcome)), JSON.stringify(answers.answers[0]));
  // What the judge said is kept beside its verdict: a reward model's two scores, this answer's first.
  const bySuite = (await apiCall('GET', `/api/runs/${runId}/answers?suite=judged&limit=500`, 'operator')).body;
  assert.equal(bySuite.counts.all, JUDGED_RECORDS);
  const all = bySuite.answers;
  assert.ok(all.length === JUDGED_RECORDS && all.every((a: any) => a.suite === 'judged'), JSON.stringify(all[0]));
  const unknown = await apiCall('GET', `/api/runs/${runId}/answers?suite=nope`, 'operator');
  assert.equal(unknown.status, 404);
  assert.match(unknown.body.message ?? unknown.body.error ?? JSON.stringify(unknown.body), /no answers of a suite nope; its suites are judged/);
  // (Identical answers tie without asking the judge: verdicts "tie", replies null.)
  const asked = all.filter((a: any) => a.judge.verdictAB !== 'tie' || a.judge.replyAB !== null);
  assert.ok(asked.length > 0 && asked.every((a: any) => /^-?\d+\.\d{4} vs -?\d+\.\d{4}$/.test(a.judge.replyAB) && a.judge.replyBA === a.judge.replyAB.split(' vs ').reverse().join(' vs ')), JSON.stringify(asked[0]?.judge));

  const rejected = await apiCall('POST', `/api/runs/${runId}/approval`, 'approver', { decision: 'reject', comment: 'plumbing test' });
  assert.equal(rejected.status, 200);
});
