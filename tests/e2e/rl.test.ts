/**
 * RLHF by reinforcement learning on the real stack: the pipeline with `rlhf.method: rl` trains a reward model
 * on the preference pairs and then the policy against it (GRPO, KL penalty to the validated model), and the
 * run reaches its gate with the figures recorded. Small settings: this checks the plumbing between the
 * activities and the trainer; the trainer's own tests and scripts/rlhf_effect.py measure the effect.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';
import { generateDemoData } from '@tempered/examples';
import { apiCall, cfg, db, demoSpec, waitFor } from '../support';

const database = db();
after(() => database.destroy());

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

  const rejected = await apiCall('POST', `/api/runs/${runId}/approval`, 'approver', { decision: 'reject', comment: 'plumbing test' });
  assert.equal(rejected.status, 200);
});
