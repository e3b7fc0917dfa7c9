/**
 * Canary rollouts on the real stack: real model servers behind the real gateway, real traffic. A first
 * version is deployed; a healthy second one takes 50% and then all of the traffic and is promoted, with the
 * observed split near the weight; a third whose model server dies mid-canary is rolled back automatically
 * and the traffic returns to the second. Prints the time from the failing canary's first error to rollback.
 * Then people's feedback through the gateway becomes the preference pairs of the next run's RLHF stage.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateDemoData } from '@tempered/examples';
import type { PipelineSpec } from '@tempered/spec';
import { apiCall, approvedRun, cfg, db, demoSpec, store, waitFor } from '../support';

const database = db();
const NAME = `canary-demo-${randomBytes(2).toString('hex')}`;

/**
 * Sends completions through the gateway with fresh client keys until stopped; counts outcomes per version. Two
 * clients, each pausing 100 ms between requests: well above the canary's minimum of requests per check, and
 * without keeping the model servers busy (the test shares two cores with the other lane's trainers).
 */
function traffic() {
  let stop = false;
  const served: Array<{ version: string; status: number; at: number }> = [];
  const loop = async () => {
    for (; !stop; await new Promise((r) => setTimeout(r, 100))) {
      const res = await fetch(`${cfg.gateway.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-client-key': randomBytes(6).toString('hex') },
        body: JSON.stringify({ model: NAME, prompt: 'reverse 1 2 3', max_tokens: 8 }),
      }).catch(() => undefined);
      if (!res) continue;
      const body: any = await res.json().catch(() => ({}));
      served.push({ version: body.model ?? res.headers.get('x-model-version') ?? '?', status: res.status, at: Date.now() });
    }
  };
  const loops = [loop(), loop()];
  return { served, stop: async () => ((stop = true), await Promise.all(loops)) };
}

const runToGate = (spec: PipelineSpec) => approvedRun(spec, 'canary e2e');

async function finalStatus(runId: string): Promise<any> {
  return waitFor(`${runId} to finish`, 5 * 60_000, async () => {
    const d = (await apiCall('GET', `/api/runs/${runId}`, 'operator')).body;
    return ['deployed', 'rolled-back', 'failed'].includes(d.run.status) ? d : undefined;
  }, 1000);
}

describe('canary rollouts through the gateway', () => {
  let spec: PipelineSpec;
  let second: any;

  before(async () => {
    const dataDir = path.join(cfg.dataDir, 'uploads', 'canary');
    generateDemoData(dataDir, { records: 1000 });
    spec = demoSpec();
    spec.name = NAME;
    spec.data.sources = [{ uri: path.join(dataDir, 'train.jsonl'), encoding: 'utf-8' }];
    spec.train = { ...spec.train, steps: 120, checkpointEvery: 60 };
    spec.rlhf = { ...spec.rlhf, method: 'none' };
    spec.test = { ...spec.test, minExactMatch: undefined, championMargin: -1 };
    const first = await finalStatus(await runToGate(spec));
    assert.equal(first.run.status, 'deployed');
  });

  after(() => database.destroy());

  test('a healthy canary gets its share of the traffic, then all of it, and is promoted', { timeout: 10 * 60_000 }, async () => {
    spec.deploy = { ...spec.deploy, canary: { steps: [50, 100], hold: '20s', checkEvery: '2s', minRequests: 10, maxErrorRate: 0.1, maxP95LatencyMs: 5000, maxNegativeFeedbackRate: 0.5 } };
    const runId = await runToGate(spec); // approved: the canary starts now, and the traffic with it
    const load = traffic();
    try {
      const canary = await waitFor('the canary at 50%', 5 * 60_000, async () => {
        const deps = (await apiCall('GET', '/api/deployments', 'operator')).body.deployments;
        return deps.find((d: any) => d.run_id === runId && d.canary?.weight === 50);
      }, 500);
      const from = Date.now();
      // The step holds 20 s and then until the canary has served minRequests: on two loaded cores (the side lane's
      // pytest serves the real base model beside it) that can take well over the hold.
      await waitFor('the canary at 100%', 3 * 60_000, async () => {
        const deps = (await apiCall('GET', '/api/deployments', 'operator')).body.deployments;
        const d = deps.find((x: any) => x.run_id === runId);
        return d?.canary?.weight === 100 || d?.status === 'serving' ? true : undefined;
      }, 500);
      const during = load.served.filter((s) => s.at >= from + 2000 && s.at < Date.now() - 2000);
      const share = during.filter((s) => s.version === canary.model_version_id).length / during.length;
      console.log(`# canary at 50%: ${during.length} requests, ${(share * 100).toFixed(1)}% to the new version`);
      assert.ok(during.length >= 20, `${during.length} requests`);
      assert.ok(Math.abs(share - 0.5) <= 0.15, `observed share ${share} for weight 0.5`);
      second = await finalStatus(runId);
      assert.equal(second.run.status, 'deployed');
      assert.equal(second.deployment.status, 'serving');
      const stage = second.stages.find((s: any) => s.name === 'deploy').summary;
      assert.equal(stage.canary.status, 'promoted');
    } finally {
      await load.stop();
    }
    const routes = await database.selectFrom('routes').selectAll().where('model_name', '=', NAME).execute();
    assert.deepEqual(routes.map((r) => [r.model_version_id, r.weight]), [[second.modelVersion.id, 100]]);
  });

  test('a canary whose server fails is rolled back automatically and the traffic returns', { timeout: 10 * 60_000 }, async () => {
    spec.deploy = { ...spec.deploy, canary: { steps: [50, 100], hold: '60s', checkEvery: '1s', minRequests: 10, maxErrorRate: 0.1, maxP95LatencyMs: 5000, maxNegativeFeedbackRate: 0.5 } };
    const runId = await runToGate(spec);
    const load = traffic();
    try {
      const canary = await waitFor('the canary at 50%', 5 * 60_000, async () => {
        const deps = (await apiCall('GET', '/api/deployments', 'operator')).body.deployments;
        return deps.find((d: any) => d.run_id === runId && d.canary?.weight === 50);
      }, 500);
      const row = await database.selectFrom('deployments').select('pid').where('id', '=', canary.id).executeTakeFirstOrThrow();
      process.kill(-row.pid!, 'SIGKILL'); // the new version's server dies: the gateway answers 502 for it
      const done = await finalStatus(runId);
      assert.equal(done.run.status, 'rolled-back');
      assert.match(done.run.error, /error rate/);
      const firstError = await database
        .selectFrom('gateway_requests')
        .select((eb) => eb.fn.min('at').as('at'))
        .where('model_version_id', '=', canary.model_version_id)
        .where('status', '>=', 500)
        .executeTakeFirstOrThrow();
      const rollback = await database.selectFrom('audit_log').select('at').where('target', '=', `run:${runId}`).where('action', '=', 'deployment.rollback').executeTakeFirstOrThrow();
      const seconds = (new Date(rollback.at).getTime() - new Date(firstError.at as Date).getTime()) / 1000;
      console.log(`# first canary error to rollback: ${seconds.toFixed(2)} s`);
      assert.ok(seconds > 0 && seconds < 30, `${seconds} s`);
      const rolledBackAt = Date.now();
      await new Promise((r) => setTimeout(r, 3000));
      const after = load.served.filter((s) => s.at > rolledBackAt + 1500);
      assert.ok(after.length > 0 && after.every((s) => s.status === 200 && s.version === second.modelVersion.id), JSON.stringify(after.slice(0, 5)));
    } finally {
      await load.stop();
    }
    const routes = await database.selectFrom('routes').selectAll().where('model_name', '=', NAME).execute();
    assert.deepEqual(routes.map((r) => [r.model_version_id, r.weight]), [[second.modelVersion.id, 100]]);
    const dep = await database.selectFrom('deployments').select('status').where('run_id', '=', runId).executeTakeFirstOrThrow();
    assert.equal(dep.status, 'rolled-back');
  });

  test("feedback sent through the gateway becomes the next run's RLHF preference pairs", { timeout: 10 * 60_000 }, async () => {
    const ask = async (prompt: string, maxTokens: number) => {
      const res = await fetch(`${cfg.gateway.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: NAME, prompt, max_tokens: maxTokens, temperature: 0 }),
      });
      assert.equal(res.status, 200);
      return (await res.json()) as any;
    };
    const feedback = async (route: string, body: unknown) => {
      const res = await fetch(`${cfg.gateway.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal(res.status, 201, await res.text());
    };
    // Thumbs on two different answers to the same prompt (the second cut short by max_tokens), and a
    // pairwise choice.
    const good = await ask('reverse 7 1 5', 8);
    await feedback('/v1/feedback', { request_id: good.id, rating: 'up', comment: 'right' });
    const pairwise = { model: NAME, prompt: 'reverse 2 8 6', response_a: '6 8 2', response_b: '2 8 6', preferred: 'a' };
    await feedback('/v1/feedback/pairwise', pairwise);
    const bad = await ask('reverse 7 1 5', 1);
    assert.notEqual(bad.choices[0].text, good.choices[0].text);
    await feedback('/v1/feedback', { request_id: bad.id, rating: 'down' });

    const next = { ...spec, deploy: { ...spec.deploy, canary: undefined }, rlhf: { ...spec.rlhf, method: 'dpo' as const, source: 'feedback' as const, preferences: undefined, steps: 4, batchSize: 2 } };
    const started = await apiCall('POST', '/api/runs', 'operator', { spec: next });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const detail = await waitFor('the feedback run at its gate', 10 * 60_000, async () => {
      const d = (await apiCall('GET', `/api/runs/${started.body.runId}`, 'operator')).body;
      if (['failed', 'cancelled'].includes(d.run.status)) throw new Error(`run ${d.run.status}: ${d.run.error}`);
      return d.run.status === 'waiting-approval' ? d : undefined;
    }, 2000);
    const prefs = detail.artifacts.find((a: any) => a.stage === 'rlhf' && a.kind === 'preferences');
    const rows = (await store().getBytes(prefs.uri)).toString('utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(rows.find((r) => r.prompt === 'reverse 2 8 6'), { prompt: 'reverse 2 8 6', chosen: '6 8 2', rejected: '2 8 6' });
    assert.deepEqual(rows.find((r) => r.prompt === 'reverse 7 1 5'), { prompt: 'reverse 7 1 5', chosen: good.choices[0].text, rejected: bad.choices[0].text });
    await apiCall('POST', `/api/runs/${started.body.runId}/approval`, 'approver', { decision: 'reject', comment: 'feedback plumbing test' });
  });
});
