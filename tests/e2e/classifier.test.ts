/**
 * A model that is not a language model, through the whole life cycle on the real stack: the sentiment example's
 * classifier (examples/sentiment/classifier.yaml: TF-IDF of each review's tokens and a logistic regression) on the
 * same Chinese reviews, split and held-out reviews as the fine-tuned SmolLM2: trained (its loss below its prior's),
 * validated, tested (label accuracy above the prior's, with its interval), RLHF skipped, approved, deployed, and
 * answering through the gateway with a label and the label's probability.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { parseSpec } from '@tempered/spec';
import { apiCall, cfg, db, repoRoot, runReaching } from '../support';

const EXAMPLE = path.join(repoRoot, 'examples', 'sentiment');
const database = db();
after(() => database.destroy());

test('the classifier example: trained, tested against its prior, deployed, and answering with a label through the gateway', { timeout: 15 * 60_000 }, async () => {
  const dataDir = path.join(cfg.dataDir, 'uploads', 'sentiment');
  execFileSync(cfg.python, [path.join(EXAMPLE, 'generate.py'), dataDir], { stdio: 'ignore' });
  const spec = parseSpec(readFileSync(path.join(EXAMPLE, 'classifier.yaml'), 'utf8'));
  spec.data.sources = spec.data.sources.map((s) => ({ ...s, uri: path.join(dataDir, path.basename(s.uri)) }));
  const started = await apiCall('POST', '/api/runs', 'operator', { spec });
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const runId = started.body.runId;
  const detail = await runReaching(runId, 'waiting-approval', 15 * 60_000);
  const stage = (name: string) => detail.stages.find((s: any) => s.name === name);
  assert.equal(stage('rlhf').status, 'skipped');
  const train = stage('train').summary;
  // Two balanced labels: the prior's log loss is about ln 2, the fitted model's well below it.
  assert.ok(Math.abs(train.initialLoss - Math.LN2) < 0.05 && train.finalLoss < train.initialLoss - 0.1, JSON.stringify(train));
  const validated = stage('validate').summary;
  assert.equal(validated.bestStep, 1, 'the fitted model validates better than its prior');
  assert.ok(validated.valLoss < validated.initialValLoss, JSON.stringify(validated));
  const t = stage('test').summary;
  const split = stage('split').summary;
  assert.equal(t.classification.examples, split.test, 'every held-out review classified');
  assert.equal(t.classification.noLabel, 0, 'a classifier always names a label');
  assert.ok(t.classification.accuracy > t.classification.baselineAccuracy + 0.15, JSON.stringify(t.classification));
  assert.ok(t.intervals.accuracy.n === split.test && t.intervals.accuracy.low > 0.5, JSON.stringify(t.intervals));

  const approved = await apiCall('POST', `/api/runs/${runId}/approval`, 'approver', { decision: 'approve', comment: 'e2e classifier' });
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  await runReaching(runId, 'deployed', 5 * 60_000);
  const review = JSON.parse(readFileSync(path.join(dataDir, 'reviews.jsonl'), 'utf8').split('\n')[0]);
  const res = await fetch(`${cfg.gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(cfg.gateway.key ? { authorization: `Bearer ${cfg.gateway.key}` } : {}) },
    body: JSON.stringify({ model: spec.name, messages: [review.messages[0]] }),
  });
  const body: any = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  const [choice] = body.choices;
  assert.ok(['positive', 'negative'].includes(choice.message.content), JSON.stringify(body));
  assert.equal(choice.classification.label, choice.message.content);
  assert.ok(choice.classification.score >= 0.5 && choice.classification.score <= 1, JSON.stringify(choice));
  assert.deepEqual(Object.keys(choice.classification.scores).sort(), ['negative', 'positive']);
});
