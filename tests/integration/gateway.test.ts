/**
 * The inference gateway on the real stack, in front of real model servers: a tiny model is trained and
 * exported by the Python trainer; its trained export is deployed by the deploy activity (which must route the
 * model's traffic to it), its untrained export is served as a second version. Then, through the stack's
 * gateway: the weighted, sticky split; NFKC normalization as the upstream sees it; request ids; metrics per
 * version; feedback and the preference pairs it makes; and the 400/404/502 errors. A second gateway process,
 * started here with a key and a blocklist, covers auth, output filtering and what the log may contain.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, TrainerSlots } from '@tempered/activities';
import { type Db, feedbackPreferencePairs, listRoutes, setRoutes } from '@tempered/db';
import { canarySchema } from '@tempered/spec';
import OpenAI from 'openai';
import type { DeployResult } from '@tempered/contract';
import { cfg, db, demoSpec, freePort, repoRoot, store, trainerCommand, trainerEnv, trainerServer, trainTinyModel, uniqueId, waitFor } from '../support';


/** `python -m tempered_trainer serve` on a free port; resolves with its URL once it listens. */
function serve(modelTar: string, modelName: string, dir: string): Promise<{ proc: ChildProcess; url: string; stdout: () => string; stderr: () => string }> {
  const config = path.join(dir, `serve-${modelName}.json`);
  writeFileSync(config, JSON.stringify({ model: modelTar, host: '127.0.0.1', port: 0, model_name: modelName, device: 'cpu' }));
  const proc = spawn(cfg.python, ['-m', 'tempered_trainer', 'serve', '--config', config], { env: trainerEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let log = ''; // read as it comes (a full pipe would block the server): it says when a generation was cancelled
  proc.stderr!.on('data', (c: Buffer) => (log = (log + c.toString()).slice(-200_000)));
  return new Promise((resolve, reject) => {
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const started = out.split('\n').find((l) => l.includes('"started"'));
      if (started) resolve({ proc, url: `http://127.0.0.1:${JSON.parse(started).port}`, stdout: () => out, stderr: () => log });
    });
    proc.once('exit', (code) => reject(new Error(`serve ${modelName} exited with ${code}: ${out}`)));
  });
}

/** Waits until `n` requests of a version are in the request log. */
async function gatewayLogSettled(database: Db, version: string, n: number): Promise<void> {
  await waitFor(`${n} records of ${version}`, 15_000, async () => {
    const rows = await database.selectFrom('gateway_requests').select('id').where('model_version_id', '=', version).execute();
    return rows.length >= n ? true : undefined;
  }, 100);
}

interface Answer {
  status: number;
  body: any;
  requestId: string | null;
  version: string | null;
}

async function call(base: string, route: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${base}${route}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: any = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* /metrics is text */
  }
  return { status: res.status, body: parsed, requestId: res.headers.get('x-request-id'), version: res.headers.get('x-model-version') };
}

/** The value of one series in Prometheus text, 0 when absent. */
function metric(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)\{(.*)\} (\S+)$/.exec(line);
    if (m && m[1] === name && want.every((w) => m[2].split(',').includes(w)) && m[2].split(',').length === want.length) return Number(m[3]);
  }
  return 0;
}

describe('gateway in front of real model servers', () => {
  const database = db();
  const gw = cfg.gateway.url;
  const name = uniqueId('gw');
  const v1 = `${name}-v1`;
  const v2 = `${name}-v2`;
  const downName = `${name}-down`;
  const dir = mkdtempSync(path.join(tmpdir(), 'tempered-gateway-'));
  const children: ChildProcess[] = [];
  let trainedTar: string;
  let deployed: DeployResult;
  let upstreamB: Awaited<ReturnType<typeof serve>>;
  /** Every answer the stack's gateway gave for this model name, by version and status: checked against /metrics. */
  const tally = new Map<string, number>();
  const count = (a: Answer) => {
    const k = `${a.version ?? 'none'}|${a.status}`;
    tally.set(k, (tally.get(k) ?? 0) + 1);
    return a;
  };
  const complete = async (body: Record<string, unknown>, headers: Record<string, string> = {}) => count(await call(gw, '/v1/completions', body, headers));

  before(async () => {
    // A tiny model of the demo task; its step-0 checkpoint exported as well is a second, different model.
    const sft = await trainTinyModel(dir);
    const [trained, untrained] = await Promise.all([
      trainerCommand('export', { checkpoint: sft.checkpoints.at(-1), output_dir: path.join(dir, 'trained') }, dir),
      trainerCommand('export', { checkpoint: sft.checkpoints[0], output_dir: path.join(dir, 'untrained') }, dir),
    ]);
    trainedTar = trained.model_tar;

    // v1 comes from the deploy activity (first test); v2 is served here and registered after v1.
    await database
      .insertInto('model_versions')
      .values({ id: `${downName}-v1`, name: downName, version: 1, run_id: uniqueId('gw-run'), model_uri: 's3://test/none', sha256: 'none', metrics: '{}' })
      .execute();
    upstreamB = await serve(untrained.model_tar, v2, dir);
    children.push(upstreamB.proc);
  });

  after(async () => {
    await setRoutes(database, name, []).catch(() => {});
    await setRoutes(database, downName, []).catch(() => {});
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    if (deployed) {
      // The deployed model server is detached (it outlives a worker); stop it as `npm stop` would.
      const pidFile = path.join(cfg.dataDir, 'run', 'model-server.pid');
      try {
        process.kill(-Number(readFileSync(pidFile, 'utf8')), 'SIGTERM');
      } catch {
        /* already gone */
      }
      await database.updateTable('deployments').set({ status: 'stopped' }).where('id', '=', deployed.deploymentId).execute();
    }
    await database.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the deploy activity routes the model name to the version it deployed, weight 100', { timeout: 180_000 }, async () => {
    const activities = createActivities({ cfg, db: database, store: store(), slots: TrainerSlots.unlimited(), trainerServer });
    const spec = demoSpec();
    spec.name = name;
    const model = await store().putFile(trainedTar, 'model', 'model.tar');
    const runId = uniqueId('gw-run');
    deployed = await new MockActivityEnvironment({ heartbeatTimeoutMs: 120_000 }).run(activities.deploy, {
      runId,
      spec,
      model,
      datasetVersionId: 'ds-gateway-test',
      metrics: { loss: 1, perplexity: 2.7, exactMatch: 0, baselineExactMatch: 0, examples: 0 },
      approver: 'gateway-test',
    });
    assert.equal(deployed.modelVersionId, v1);
    const routes = await listRoutes(database, name);
    assert.deepEqual(routes.map((r) => [r.modelVersionId, r.endpoint, r.weight]), [[v1, deployed.endpoint, 100]]);

    // The running gateway hears of it (NOTIFY) and serves the model by name, as the model server itself does.
    await waitFor('the gateway to list the model', 15_000, async () => ((await call(gw, '/v1/models', undefined)).body.data.some((m: any) => m.id === name) ? true : undefined), 100);
    const direct = await call(deployed.endpoint, '/v1/completions', { prompt: 'reverse 1 2 3', max_tokens: 8 });
    const through = await complete({ model: name, prompt: 'reverse 1 2 3', max_tokens: 8 });
    assert.equal(through.status, 200, JSON.stringify(through.body));
    assert.equal(through.version, v1);
    assert.equal(through.body.choices[0].text, direct.body.choices[0].text);
    assert.ok(direct.body.choices[0].text.trim().length > 0, `the trained model answers with text: ${JSON.stringify(direct.body)}`);
  });

  test('a 70/30 split over 1500 client keys lands within 5 points of the weights, and every key sticks to its version', { timeout: 180_000 }, async () => {
    await database
      .insertInto('model_versions')
      .values({ id: v2, name, version: 2, run_id: uniqueId('gw-run'), model_uri: 's3://test/untrained', sha256: 'untrained', metrics: '{}' })
      .execute();
    await setRoutes(database, name, [
      { modelVersionId: v1, endpoint: deployed.endpoint, weight: 70 },
      { modelVersionId: v2, endpoint: upstreamB.url, weight: 30 },
    ]);
    await waitFor('the gateway to load 70/30', 15_000, async () => {
      const entry = (await call(gw, '/v1/models', undefined)).body.data.find((m: any) => m.id === name);
      return entry?.versions?.length === 2 && entry.versions[0].weight === 70 ? true : undefined;
    }, 100);

    const keys = Array.from({ length: 1500 }, (_, i) => `client-${i}`);
    const first = new Map<string, string>();
    const send = async (key: string) => {
      const a = await complete({ model: name, prompt: 'reverse 4 2', max_tokens: 1 }, { 'x-client-key': key });
      assert.equal(a.status, 200, JSON.stringify(a.body));
      return a.version!;
    };
    const pool = async <T>(items: T[], fn: (item: T) => Promise<void>, width = 8) => {
      let next = 0;
      await Promise.all(Array.from({ length: width }, async () => {
        while (next < items.length) await fn(items[next++]);
      }));
    };
    await pool(keys, async (key) => void first.set(key, await send(key)));
    const onV1 = [...first.values()].filter((v) => v === v1).length;
    const share = onV1 / keys.length;
    console.log(`# traffic split over ${keys.length} client keys: ${v1} ${(share * 100).toFixed(1)}%, ${v2} ${((1 - share) * 100).toFixed(1)}% (weights 70/30)`);
    assert.ok(Math.abs(share - 0.7) <= 0.05, `share on v1 ${share}`);
    assert.equal(onV1 + [...first.values()].filter((v) => v === v2).length, keys.length);

    // Stickiness: the same key, asked again (three more times for 100 keys), gets the same version.
    const again = keys.slice(0, 100).flatMap((k) => [k, k, k]);
    await pool(again, async (key) => assert.equal(await send(key), first.get(key), key));

    // Without x-client-key, the body's `user` is the key; without either, the client's address.
    const byUser = await Promise.all(Array.from({ length: 6 }, () => complete({ model: name, prompt: 'reverse 4 2', max_tokens: 1, user: 'alice' })));
    assert.equal(new Set(byUser.map((a) => a.version)).size, 1);
    const byAddress = await Promise.all(Array.from({ length: 6 }, () => complete({ model: name, prompt: 'reverse 4 2', max_tokens: 1 })));
    assert.equal(new Set(byAddress.map((a) => a.version)).size, 1);
  });

  test('the prompt reaches the model server NFKC-normalized, without control characters, whitespace collapsed', async () => {
    const messy = 'ｒｅｖｅｒｓｅ\u3000１　２\t\t３\u0007 ';
    const clean = 'reverse 1 2 3';
    const viaGateway = await complete({ model: v2, prompt: messy, max_tokens: 6 });
    assert.equal(viaGateway.status, 200, JSON.stringify(viaGateway.body));
    assert.equal(viaGateway.version, v2, 'a version id pins the request to that version');
    const cleanDirect = await call(upstreamB.url, '/v1/completions', { model: v2, prompt: clean, max_tokens: 6 });
    const messyDirect = await call(upstreamB.url, '/v1/completions', { model: v2, prompt: messy, max_tokens: 6 });
    // The model server tokenized exactly the clean prompt: same token count and the same greedy answer.
    assert.equal(viaGateway.body.usage.prompt_tokens, cleanDirect.body.usage.prompt_tokens);
    assert.notEqual(messyDirect.body.usage.prompt_tokens, cleanDirect.body.usage.prompt_tokens, 'the raw text would have tokenized differently');
    assert.equal(viaGateway.body.choices[0].text, cleanDirect.body.choices[0].text);

    // Chat: the whole conversation goes upstream, every turn normalized the same way, for the model server to
    // render with the model's template: the answer is the server's own answer to the clean conversation.
    const earlier = [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }];
    const chat = count(await call(gw, '/v1/chat/completions', { model: v2, max_tokens: 6, messages: [...earlier, { role: 'user', content: [{ type: 'text', text: messy }] }] }));
    assert.equal(chat.status, 200, JSON.stringify(chat.body));
    assert.equal(chat.body.object, 'chat.completion');
    assert.equal(chat.body.choices[0].message.role, 'assistant');
    const chatDirect = await call(upstreamB.url, '/v1/chat/completions', { model: v2, max_tokens: 6, messages: [...earlier, { role: 'user', content: clean }] });
    assert.equal(chatDirect.status, 200, JSON.stringify(chatDirect.body));
    assert.equal(chat.body.choices[0].message.content, chatDirect.body.choices[0].message.content);
    assert.equal(chat.body.usage.prompt_tokens, chatDirect.body.usage.prompt_tokens);
    assert.ok(chat.body.usage.prompt_tokens > cleanDirect.body.usage.prompt_tokens, 'the earlier turns reached the model, not only the last message');

    await waitFor('the request record', 15_000, async () => {
      const row = await database.selectFrom('gateway_requests').selectAll().where('id', '=', viaGateway.requestId!).executeTakeFirst();
      if (!row) return undefined;
      assert.equal(row.prompt, clean);
      assert.equal(row.model_version_id, v2);
      assert.equal(row.response, viaGateway.body.choices[0].text);
      assert.equal(row.status, 200);
      assert.ok(row.latency_ms > 0);
      return true;
    }, 100);
  });

  test('every response carries a unique request id, also as the body id, errors included', async () => {
    const answers = [
      await complete({ model: name, prompt: 'reverse 5 6', max_tokens: 2 }),
      await complete({ model: name, prompt: 'reverse 5 6', max_tokens: 2 }),
      count(await call(gw, '/v1/completions', { model: 'no-such-model', prompt: 'x' })),
      await call(gw, '/v1/models', undefined),
    ];
    for (const a of answers) assert.match(a.requestId ?? '', /^req-[0-9a-f-]{36}$/);
    for (const a of answers.slice(0, 3)) assert.equal(a.body.id, a.requestId);
    assert.equal(new Set(answers.map((a) => a.requestId)).size, answers.length);
  });

  test('bad requests get 400 naming the field, an unknown model 404 listing the available ones, a dead upstream 502', async () => {
    const bad: Array<[unknown, string]> = [
      [{ prompt: 'reverse 1' }, 'model'],
      [{ model: name }, 'prompt'],
      [{ model: name, prompt: 5 }, 'prompt'],
      [{ model: name, prompt: ' \u0007 ' }, 'prompt'],
      [{ model: name, prompt: 'reverse 1', stream: 'yes' }, 'stream'],
    ];
    for (const [body, param] of bad) {
      const a = count(await call(gw, '/v1/completions', body));
      assert.equal(a.status, 400, JSON.stringify(a.body));
      assert.equal(a.body.error.param, param);
      assert.match(a.body.error.message, new RegExp(`^${param}: `));
    }
    const noUser = await call(gw, '/v1/chat/completions', { model: name, messages: [{ role: 'system', content: 'x' }] });
    assert.equal(noUser.status, 400);
    assert.equal(noUser.body.error.param, 'messages');
    const notJson = await call(gw, '/v1/completions', '{"model":');
    assert.equal(notJson.status, 400);
    assert.match(notJson.body.error.message, /not valid JSON/);
    // A sampling number out of OpenAI's range is refused here, naming the field, before any model server sees it.
    const refused = await complete({ model: name, prompt: 'reverse 1', max_tokens: -1 });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error.param, 'max_tokens');
    assert.equal(refused.version, null);

    const unknown = await call(gw, '/v1/completions', { model: 'no-such-model', prompt: 'reverse 1' });
    assert.equal(unknown.status, 404);
    assert.ok(unknown.body.available_models.includes(name), JSON.stringify(unknown.body));
    assert.match(unknown.body.error.message, new RegExp(`no route for model 'no-such-model': available models are .*${name}`));

    await setRoutes(database, downName, [{ modelVersionId: `${downName}-v1`, endpoint: `http://127.0.0.1:${await freePort()}`, weight: 100 }]);
    await waitFor('the gateway to load the dead route', 15_000, async () => ((await call(gw, '/v1/models', undefined)).body.data.some((m: any) => m.id === downName) ? true : undefined), 100);
    const down = await call(gw, '/v1/completions', { model: downName, prompt: 'reverse 1' });
    assert.equal(down.status, 502, JSON.stringify(down.body));
    assert.equal(down.version, `${downName}-v1`);
    assert.match(down.body.error.message, new RegExp(`the model server of ${downName}-v1 \\(http://127\\.0\\.0\\.1:\\d+\\) ECONNREFUSED`));
    const metrics = (await call(gw, '/metrics', undefined)).body as string;
    assert.equal(metrics.includes('# TYPE tempered_gateway_errors_total counter'), true);
    assert.equal(metric(metrics, 'tempered_gateway_errors_total', { model: downName, version: `${downName}-v1`, reason: 'upstream_unreachable' }), 1);
    assert.equal(metric(metrics, 'tempered_gateway_requests_total', { model: downName, version: `${downName}-v1`, status: '502' }), 1);
  });

  test('/metrics counts every request per version and status, with a latency histogram per version', async () => {
    const text = (await call(gw, '/metrics', undefined)).body as string;
    for (const version of [v1, v2]) {
      let total = 0;
      for (const [k, n] of tally) {
        const [v, status] = k.split('|');
        if (v !== version) continue;
        total += n;
        assert.equal(metric(text, 'tempered_gateway_requests_total', { model: name, version, status }), n, `${version} ${status}`);
      }
      assert.ok(total > 100, `${version} served ${total}`);
      assert.equal(metric(text, 'tempered_gateway_request_duration_seconds_count', { model: name, version }), total);
      assert.equal(metric(text, 'tempered_gateway_request_duration_seconds_bucket', { model: name, version, le: '+Inf' }), total);
      assert.ok(metric(text, 'tempered_gateway_request_duration_seconds_sum', { model: name, version }) > 0);
      assert.equal(metric(text, 'tempered_gateway_errors_total', { model: name, version, reason: 'upstream_unreachable' }), 0);
    }
    assert.equal(metric(text, 'tempered_gateway_route_weight', { model: name, version: v1 }), 70);
  });

  test('/metrics is prom-client exposition text carrying every gateway metric under its name and type', async () => {
    const res = await fetch(`${gw}/metrics`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    const types: Record<string, string> = {
      tempered_gateway_requests_total: 'counter',
      tempered_gateway_errors_total: 'counter',
      tempered_gateway_request_duration_seconds: 'histogram',
      tempered_gateway_upstream_duration_seconds: 'histogram',
      tempered_gateway_flagged_total: 'counter',
      tempered_gateway_feedback_total: 'counter',
      tempered_gateway_route_weight: 'gauge',
      tempered_gateway_request_log_pending: 'gauge',
      tempered_gateway_request_log_dropped_total: 'counter',
      tempered_gateway_request_log_rejected_total: 'counter',
    };
    const declared = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
    assert.deepEqual(Object.fromEntries(declared), types);
    for (const metricName of Object.keys(types)) assert.match(text, new RegExp(`^# HELP ${metricName} \\S`, 'm'));
    // Every sample is `name{label="value",...} number`, and belongs to a declared metric.
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const m = /^([a-z_]+)(\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|[+-]Inf|NaN)$/.exec(line);
      assert.ok(m, `not an exposition sample: ${line}`);
      assert.ok(declared.has(m[1].replace(/_(bucket|sum|count)$/, '')), line);
    }
    assert.ok(metric(text, 'tempered_gateway_upstream_duration_seconds_count', { model: name, version: v1 }) > 0);
  });

  test('the OpenAPI document at /openapi.json lists every route with its request and response schemas', async () => {
    const res = await call(gw, '/openapi.json', undefined);
    assert.equal(res.status, 200);
    const doc = res.body;
    assert.match(doc.openapi, /^3\./);
    const operations = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`));
    assert.deepEqual(operations.sort(), [
      'GET /healthz',
      'GET /metrics',
      'GET /v1/models',
      'POST /v1/chat/completions',
      'POST /v1/completions',
      'POST /v1/feedback',
      'POST /v1/feedback/pairwise',
    ]);
    const body = (p: string) => doc.paths[p].post.requestBody.content['application/json'].schema;
    assert.deepEqual(body('/v1/completions').required, ['model', 'prompt']);
    assert.deepEqual(body('/v1/chat/completions').required, ['model', 'messages']);
    assert.deepEqual(body('/v1/feedback').properties.rating.enum, ['up', 'down']);
    assert.deepEqual(body('/v1/feedback/pairwise').properties.preferred.enum, ['a', 'b', 'tie']);
    const completion = doc.paths['/v1/completions'].post.responses;
    assert.ok(completion['200'].content['application/json'].schema.properties.choices, JSON.stringify(completion['200']));
    assert.ok(completion['4XX'].content['application/json'].schema.properties.error.properties.param, 'the error body names the param');
    assert.ok(doc.paths['/v1/feedback'].post.responses['201']);
    assert.ok(doc.paths['/v1/models'].get.responses['200'].content['application/json'].schema.properties.data);
  });

  test('feedback is stored with the serving version and becomes preference pairs', async () => {
    const since = new Date(Date.now() - 1000);
    // The same prompt answered by each version (pinned): different models, different answers.
    const prompt = 'reverse 7 3 9';
    const good = await complete({ model: v1, prompt, max_tokens: 8 });
    const poor = await complete({ model: v2, prompt: `  ${prompt}  `, max_tokens: 8 });
    assert.notEqual(good.body.choices[0].text, poor.body.choices[0].text);
    // Rated at once: the request records may still be waiting for their batch; the gateway writes them first.
    const up = await call(gw, '/v1/feedback', { request_id: good.requestId, rating: 'up', comment: 'right' });
    const down = await call(gw, '/v1/feedback', { request_id: poor.requestId, rating: 'down' });
    assert.equal(up.status, 201, JSON.stringify(up.body));
    assert.equal(down.status, 201, JSON.stringify(down.body));
    assert.equal(up.body.model_version, v1);
    assert.equal(down.body.model_version, v2);
    const stored = await database.selectFrom('feedback_ratings').selectAll().where('model_name', '=', name).orderBy('id').execute();
    assert.deepEqual(stored.map((f) => [f.request_id, f.model_version_id, f.rating, f.comment]), [
      [good.requestId, v1, 'up', 'right'],
      [poor.requestId, v2, 'down', null],
    ]);

    // Pairwise on two served answers (versions taken from the requests), and one tie, which makes no pair.
    const a = await complete({ model: v2, prompt: 'reverse 1 8', max_tokens: 8 });
    const b = await complete({ model: v1, prompt: 'reverse 1 8', max_tokens: 8 });
    // Responses are kept as the client saw them (only prompts are normalized); a blank one would be refused.
    const textOf = (x: Answer, fallback: string): string => (x.body.choices[0].text.trim() ? x.body.choices[0].text : fallback);
    const pair = await call(gw, '/v1/feedback/pairwise', {
      prompt: 'ｒｅｖｅｒｓｅ 1 8', response_a: textOf(a, 'a'), response_b: textOf(b, 'b'), preferred: 'b', request_ids: [a.requestId, b.requestId],
    });
    assert.equal(pair.status, 201, JSON.stringify(pair.body));
    assert.equal(pair.body.model, name);
    const row = await database.selectFrom('feedback_pairwise').selectAll().where('id', '=', pair.body.id).executeTakeFirstOrThrow();
    assert.deepEqual([row.model_version_a, row.model_version_b, row.prompt], [v2, v1, 'reverse 1 8']);
    const tie = await call(gw, '/v1/feedback/pairwise', { prompt: 'reverse 2', response_a: '2', response_b: '2 2', preferred: 'tie', model: name });
    assert.equal(tie.status, 201);

    const pairs = await feedbackPreferencePairs(database, { modelName: name });
    assert.deepEqual(pairs, [
      { prompt: 'reverse 1 8', chosen: textOf(b, 'b'), rejected: textOf(a, 'a') },
      { prompt, chosen: good.body.choices[0].text, rejected: poor.body.choices[0].text },
    ]);
    assert.deepEqual(await feedbackPreferencePairs(database, { modelName: name, since: new Date(Date.now() + 60_000) }), []);
    assert.equal((await feedbackPreferencePairs(database, { modelName: name, since })).length, 2);
    // A later change of mind on the same request replaces the earlier rating: no pair is left for that prompt.
    await call(gw, '/v1/feedback', { request_id: poor.requestId, rating: 'up' });
    assert.equal((await feedbackPreferencePairs(database, { modelName: name })).length, 1);

    const metrics = (await call(gw, '/metrics', undefined)).body as string;
    assert.equal(metric(metrics, 'tempered_gateway_feedback_total', { model: name, version: v1, rating: 'up' }), 1);
    assert.equal(metric(metrics, 'tempered_gateway_feedback_total', { model: name, version: v2, rating: 'down' }), 1);
  });

  test('bad feedback: 404 for an unknown request id, 400 naming the field', async () => {
    const unknown = await call(gw, '/v1/feedback', { request_id: 'req-00000000-0000-0000-0000-000000000000', rating: 'up' });
    assert.equal(unknown.status, 404);
    assert.match(unknown.body.error.message, /request_id: no request req-0{8}-.* was served by this gateway/);
    const cases: Array<[string, unknown, string]> = [
      ['/v1/feedback', { request_id: 'x', rating: 'meh' }, 'rating'],
      ['/v1/feedback', { rating: 'up' }, 'request_id'],
      ['/v1/feedback', { request_id: 'x', rating: 'up', comment: 5 }, 'comment'],
      ['/v1/feedback/pairwise', { response_a: 'a', response_b: 'b', preferred: 'a' }, 'prompt'],
      ['/v1/feedback/pairwise', { prompt: 'p', response_a: 'a', response_b: 'b', preferred: 'c' }, 'preferred'],
      ['/v1/feedback/pairwise', { prompt: 'p', response_a: 'a', preferred: 'a' }, 'response_b'],
      ['/v1/feedback/pairwise', { prompt: 'p', response_a: 'a', response_b: 'b', preferred: 'a', request_ids: ['x'] }, 'request_ids'],
    ];
    for (const [route, body, param] of cases) {
      const a = await call(gw, route, body);
      assert.equal(a.status, 400, `${route} ${JSON.stringify(body)} → ${JSON.stringify(a.body)}`);
      assert.equal(a.body.error.param, param);
    }
    const missing = await call(gw, '/v1/feedback/pairwise', { prompt: 'p', response_a: 'a', response_b: 'b', preferred: 'a', request_ids: ['req-nope', null] });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.param, 'request_ids[0]');
  });

  test('with a key and a blocklist: no key 401, blocked words replaced and flagged, and the log holds no prompt or key', { timeout: 60_000 }, async () => {
    // A word the model really says to this prompt, so the filter is tested on real output.
    const prompt = 'reverse 1 2 3';
    const said: string = (await call(deployed.endpoint, '/v1/completions', { prompt, max_tokens: 8 })).body.choices[0].text;
    const word = said.split(/\s+/).find((w) => /^[\p{L}\p{N}]+$/u.test(w));
    assert.ok(word, `the model's answer has a word: ${JSON.stringify(said)}`);
    const key = `key-${uniqueId('k')}`;
    const port = await freePort();
    const proc = spawn(path.join(repoRoot, 'node_modules', '.bin', 'tsx'), [path.join(repoRoot, 'services', 'gateway', 'src', 'main.ts')], {
      env: { ...process.env, TEMPERED_GATEWAY_PORT: String(port), TEMPERED_GATEWAY_KEY: key, TEMPERED_BLOCKLIST: `zzfirst, ${word.toUpperCase()} ,zzlast` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(proc);
    let log = '';
    proc.stdout!.on('data', (c: Buffer) => (log += c.toString()));
    proc.stderr!.on('data', (c: Buffer) => (log += c.toString()));
    const base = `http://127.0.0.1:${port}`;
    await waitFor('the second gateway', 30_000, async () => ((await fetch(`${base}/healthz`).catch(() => undefined))?.ok ? true : undefined), 200);
    const auth = { authorization: `Bearer ${key}` };

    const noKey = await call(base, '/v1/completions', { model: v1, prompt });
    assert.equal(noKey.status, 401);
    assert.equal(noKey.body.error.type, 'authentication_error');
    assert.equal((await call(base, '/v1/completions', { model: v1, prompt }, { authorization: 'Bearer wrong' })).status, 401);
    assert.equal((await call(base, '/metrics', undefined)).status, 401);

    const filtered = await call(base, '/v1/completions', { model: v1, prompt, max_tokens: 8 }, auth);
    assert.equal(filtered.status, 200, JSON.stringify(filtered.body));
    const expected = said.replace(new RegExp(`(?<![\\p{L}\\p{N}_])${word}(?![\\p{L}\\p{N}_])`, 'gu'), '[BLOCKED]');
    assert.notEqual(expected, said);
    assert.equal(filtered.body.choices[0].text, expected);
    assert.equal(filtered.body.choices[0].finish_reason, 'content_filter');
    assert.equal(filtered.body.tempered.flagged, true);
    const metrics = (await call(base, '/metrics', undefined, auth)).body as string;
    assert.equal(metric(metrics, 'tempered_gateway_flagged_total', { model: name, version: v1 }), 1);
    // Streamed, the filter gives exactly the same text: it holds back only the tail a blocked word could still be forming in.
    const keyed = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0 });
    const streamed = await assemble(await keyed.completions.create({ model: v1, prompt, max_tokens: 8, stream: true }), 'completion');
    assert.deepEqual([streamed.texts, streamed.finish], [[expected], ['content_filter']]);
    // Log probabilities would show the replaced words (each token's text): behind a blocklist they are refused.
    await assert.rejects(keyed.completions.create({ model: v1, prompt, logprobs: 1 }), (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === 'logprobs');
    // The stack's gateway has no blocklist: the same answer passes unchanged there.
    const unfiltered = await complete({ model: v1, prompt, max_tokens: 8 });
    assert.equal(unfiltered.body.choices[0].text, said);
    assert.equal(unfiltered.body.tempered.flagged, false);

    const stored = await waitFor('the flagged record', 15_000, async () =>
      database.selectFrom('gateway_requests').select(['flagged', 'response']).where('id', '=', filtered.requestId!).executeTakeFirst(), 100);
    assert.deepEqual(stored, { flagged: true, response: expected });

    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    const lines = log.split('\n').filter((l) => l.startsWith('POST '));
    assert.ok(lines.some((l) => l.includes(`POST /v1/completions 200 `) && l.includes(`version=${v1}`) && l.includes(`id=${filtered.requestId}`)), log);
    assert.ok(!log.includes(prompt) && !log.includes(key), `the log must not hold prompts or keys:\n${log}`);
  });

  // The OpenAI surface, through the official client (npm `openai`), as an application would use it.
  const client = () => new OpenAI({ baseURL: `${gw}/v1`, apiKey: 'unused', maxRetries: 0 });
  /** Requests the client sent to v2 (pinned): the last test counts them with the rest. */
  let clientToV2 = 0;
  const v2Call = async <T>(p: Promise<T>): Promise<T> => ((clientToV2 += 1), p);

  /** A completion stream put together: each choice's text and finish reason, and the usage chunk's usage. */
  async function assemble(stream: AsyncIterable<any>, kind: 'completion' | 'chat') {
    const texts: string[] = [];
    const finish: Array<string | null> = [];
    let usage: unknown;
    let roles = 0;
    let afterUsage = 0;
    for await (const chunk of stream) {
      if (usage) afterUsage++;
      if (chunk.usage) {
        usage = chunk.usage;
        assert.deepEqual(chunk.choices, [], 'the usage chunk has no choices');
      }
      for (const c of chunk.choices) {
        texts[c.index] = (texts[c.index] ?? '') + ((kind === 'chat' ? c.delta.content : c.text) ?? '');
        if (kind === 'chat' && c.delta.role) {
          assert.equal(texts[c.index], '', 'the role comes in the first chunk of a choice');
          roles++;
        }
        if (c.finish_reason) finish[c.index] = c.finish_reason;
      }
    }
    assert.equal(afterUsage, 0, 'the usage chunk is the last');
    return { texts, finish, usage, roles };
  }

  test('the OpenAI client streams completions and chats; the pieces add up to the whole greedy answer and include_usage gives its exact usage', async () => {
    const openai = client();
    const prompt = 'reverse 3 1 2';
    const whole = await v2Call(openai.completions.create({ model: v2, prompt, max_tokens: 12 }));
    const streamed = await assemble(await v2Call(openai.completions.create({ model: v2, prompt, max_tokens: 12, stream: true, stream_options: { include_usage: true } })), 'completion');
    assert.deepEqual(streamed.texts, [whole.choices[0].text]);
    assert.deepEqual(streamed.finish, [whole.choices[0].finish_reason]);
    assert.deepEqual(streamed.usage, whole.usage);
    assert.ok(whole.usage!.completion_tokens > 0);

    const messages = [{ role: 'system' as const, content: 'be brief' }, { role: 'user' as const, content: prompt }];
    const chat = await v2Call(openai.chat.completions.create({ model: v2, messages, max_tokens: 12 }));
    const raw = await v2Call(openai.chat.completions.create({ model: v2, messages, max_tokens: 12, stream: true, stream_options: { include_usage: true } }));
    const chunks: any[] = [];
    for await (const c of raw) chunks.push(c);
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === v2 && c.id === chunks[0].id), JSON.stringify(chunks[0]));
    assert.match(chunks[0].id, /^req-/, 'the id is the gateway request id');
    const streamedChat = await assemble((async function* () { yield* chunks; })(), 'chat');
    assert.equal(streamedChat.roles, 1);
    assert.deepEqual(streamedChat.texts, [chat.choices[0].message.content]);
    assert.deepEqual(streamedChat.finish, [chat.choices[0].finish_reason]);
    assert.deepEqual(streamedChat.usage, chat.usage);
    const last = chunks.at(-2);
    assert.deepEqual(last.choices[0].delta, {}, "OpenAI's last chunk of a choice has an empty delta");

    // Without include_usage no chunk carries usage; the request log has the whole streamed text and its usage anyway.
    const bare = openai.completions.create({ model: v2, prompt, max_tokens: 12, stream: true });
    const response = await v2Call(bare.asResponse());
    const requestId = response.headers.get('x-request-id')!;
    assert.equal(response.headers.get('content-type'), 'text/event-stream');
    const text = await response.text();
    assert.ok(text.endsWith('data: [DONE]\n\n'), text.slice(-40));
    assert.ok(!text.includes('"usage"'), 'no usage unless asked for');
    const row = await waitFor('the streamed request record', 15_000, async () =>
      database.selectFrom('gateway_requests').selectAll().where('id', '=', requestId).executeTakeFirst(), 100);
    assert.deepEqual(
      [row.response, row.status, row.streamed, row.prompt_tokens, row.completion_tokens, row.prompt],
      [whole.choices[0].text, 200, true, whole.usage!.prompt_tokens, whole.usage!.completion_tokens, prompt],
    );
  });

  test('n choices, prompt lists indexed prompt-major, stop strings and seeds, through the OpenAI client', async () => {
    const openai = client();
    const one = (prompt: string) => v2Call(openai.completions.create({ model: v2, prompt, max_tokens: 10 })).then((r) => r.choices[0].text);
    const [a, b] = [await one('reverse 1 2'), await one('reverse 3 4')];
    const two = await v2Call(openai.chat.completions.create({ model: v2, messages: [{ role: 'user', content: 'reverse 1 2' }], max_tokens: 10, n: 2 }));
    assert.deepEqual(two.choices.map((c) => [c.index, c.message.content]), [[0, a], [1, a]], 'greedy n=2: two identical choices');
    const four = await v2Call(openai.completions.create({ model: v2, prompt: ['reverse 1 2', 'reverse 3 4'], max_tokens: 10, n: 2 }));
    assert.deepEqual(four.choices.map((c) => [c.index, c.text]), [[0, a], [1, a], [2, b], [3, b]]);
    const fourStreamed = await assemble(await v2Call(openai.completions.create({ model: v2, prompt: ['reverse 1 2', 'reverse 3 4'], max_tokens: 10, n: 2, stream: true })), 'completion');
    assert.deepEqual(fourStreamed.texts, [a, a, b, b]);

    // stop: the text is cut before the first stop string found, finish_reason "stop", streamed or not.
    const full = await one('reverse 9 8 7');
    assert.ok(full.length >= 5, `the untrained model rambles: ${JSON.stringify(full)}`);
    const stop = full.slice(3, 5);
    const cut = full.slice(0, full.indexOf(stop));
    const stopped = await v2Call(openai.completions.create({ model: v2, prompt: 'reverse 9 8 7', max_tokens: 10, stop: [stop, 'zz-never'] }));
    assert.deepEqual([stopped.choices[0].text, stopped.choices[0].finish_reason], [cut, 'stop']);
    const stoppedStream = await assemble(await v2Call(openai.completions.create({ model: v2, prompt: 'reverse 9 8 7', max_tokens: 10, stop, stream: true })), 'completion');
    assert.deepEqual([stoppedStream.texts, stoppedStream.finish], [[cut], ['stop']]);

    // seed: the same seed and request give the same sample; another seed (almost surely) another.
    const sample = (seed: number) =>
      v2Call(openai.completions.create({ model: v2, prompt: 'reverse 5 5', max_tokens: 10, temperature: 1.5, n: 3, seed })).then((r) => r.choices.map((c) => c.text));
    const first = await sample(11);
    assert.deepEqual(await sample(11), first);
    assert.notDeepEqual(await sample(12), first);
    assert.ok(new Set(first).size > 1, `n sampled choices differ: ${JSON.stringify(first)}`);
  });

  test('log probabilities, the model\'s own, for each returned token: completions and chats, whole and streamed', async () => {
    const openai = client();
    const prompt = 'reverse 2 4 6';
    const whole = await openai.completions.create({ model: v1, prompt, max_tokens: 8, logprobs: 2 });
    const lp = whole.choices[0].logprobs!;
    assert.equal(lp.tokens!.join(''), whole.choices[0].text);
    assert.ok(lp.tokens!.length > 0 && lp.token_logprobs!.every((v) => v <= 0));
    assert.ok(lp.top_logprobs!.every((top, i) => Object.keys(top).length === 2 && Math.abs(Math.max(...Object.values(top)) - lp.token_logprobs![i]) < 1e-6), 'greedy takes the likeliest');
    const messages = [{ role: 'user' as const, content: prompt }];
    const chat = await openai.chat.completions.create({ model: v1, messages, max_tokens: 8, logprobs: true, top_logprobs: 3 });
    const content = chat.choices[0].logprobs!.content!;
    assert.equal(content.map((t) => t.token).join(''), chat.choices[0].message.content);
    assert.ok(content.every((t) => t.top_logprobs.length === 3));
    const streamed: unknown[] = [];
    for await (const chunk of await openai.chat.completions.create({ model: v1, messages, max_tokens: 8, logprobs: true, top_logprobs: 3, stream: true })) {
      streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    }
    assert.deepEqual(streamed, content);
  });

  test('an unsupported parameter is a 400 naming it (BadRequestError.param), never silently ignored', async () => {
    const openai = client();
    const messages = [{ role: 'user' as const, content: 'reverse 1' }];
    const refused: Array<[string, () => Promise<unknown>]> = [
      ['tools', () => openai.chat.completions.create({ model: v2, messages, tools: [{ type: 'function', function: { name: 'f' } }] })],
      ['top_logprobs', () => openai.chat.completions.create({ model: v2, messages, top_logprobs: 2 })],
      ['top_logprobs', () => openai.chat.completions.create({ model: v2, messages, logprobs: true, top_logprobs: 21 })],
      ['response_format', () => openai.chat.completions.create({ model: v2, messages, response_format: { type: 'json_object' } })],
      ['logprobs', () => openai.completions.create({ model: v2, prompt: 'reverse 1', logprobs: 6 })],
      ['echo', () => openai.completions.create({ model: v2, prompt: 'reverse 1', echo: true })],
      ['suffix', () => openai.completions.create({ model: v2, prompt: 'reverse 1', suffix: 'x' })],
      ['best_of', () => openai.completions.create({ model: v2, prompt: 'reverse 1', best_of: 3 })],
      ['logit_bias', () => openai.completions.create({ model: v2, prompt: 'reverse 1', logit_bias: { '5': 10 } })],
      ['max_tokens', () => openai.completions.create({ model: v2, prompt: 'reverse 1', max_tokens: cfg.gateway.maxTokens + 1 })],
      ['stop', () => openai.completions.create({ model: v2, prompt: 'reverse 1', stop: ['a', 'b', 'c', 'd', 'e'] })],
      ['stream_options', () => openai.completions.create({ model: v2, prompt: 'reverse 1', stream_options: { include_usage: true } })],
      ['prompt[1]', () => openai.completions.create({ model: v2, prompt: ['reverse 1', ' \u0007 '] })],
    ];
    for (const [param, call] of refused) {
      await assert.rejects(call, (err: unknown) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `${param}: ${String(err)}`);
        assert.equal(err.param, param, err.message);
        return true;
      });
    }
    // A field the gateway does not know goes to the model server, which refuses it by name: passed on, a 400 recorded as one.
    // (The model server refuses it before decoding: its `requests` do not count it.)
    await assert.rejects(openai.completions.create({ model: v2, prompt: 'reverse 1', frobnicate: 1 } as any), (err: unknown) => {
      assert.ok(err instanceof OpenAI.BadRequestError);
      assert.equal(err.param, 'frobnicate');
      return true;
    });
  });

  test('a client that leaves a stream (or a whole answer) frees the model server: its generation stops, the next request is served, the canary counts no error', { timeout: 300_000 }, async () => {
    // SmolLM2 from the base-model catalog: a context long enough for a generation that would run for minutes.
    const smolName = `${name}-smol`;
    const smolVersion = `${smolName}-v1`;
    const smol = await serve(path.join(cfg.baseModelsDir, 'smollm2-135m-instruct', 'model'), smolVersion, dir);
    children.push(smol.proc);
    await database
      .insertInto('model_versions')
      .values({ id: smolVersion, name: smolName, version: 1, run_id: uniqueId('gw-run'), model_uri: 's3://test/smol', sha256: 'smol', metrics: '{}' })
      .execute();
    const since = new Date();
    await setRoutes(database, smolName, [{ modelVersionId: smolVersion, endpoint: smol.url, weight: 100 }]);
    await waitFor('the gateway to route the catalog model', 15_000, async () => ((await call(gw, '/v1/models', undefined)).body.data.some((m: any) => m.id === smolName) ? true : undefined), 100);
    const openai = client();
    const messages = [{ role: 'user' as const, content: 'Write a long story about a lighthouse keeper.' }];

    // Time to the first streamed token against the whole answer, for the same 8 tokens.
    let t0 = performance.now();
    const whole = await openai.chat.completions.create({ model: smolName, messages, max_tokens: 8 });
    const wholeMs = performance.now() - t0;
    t0 = performance.now();
    let firstMs = 0;
    let streamedText = '';
    for await (const chunk of await openai.chat.completions.create({ model: smolName, messages, max_tokens: 8, stream: true })) {
      const piece = chunk.choices[0]?.delta.content;
      if (piece && !firstMs) firstMs = performance.now() - t0;
      streamedText += piece ?? '';
    }
    const streamMs = performance.now() - t0;
    assert.equal(streamedText, whole.choices[0].message.content);
    console.log(`# SmolLM2-135M on CPU, 8 tokens: first streamed token after ${firstMs.toFixed(0)} ms, whole stream ${streamMs.toFixed(0)} ms, non-streamed answer ${wholeMs.toFixed(0)} ms`);

    // A stream asked for 4000 tokens, left after its first piece.
    const { data: stream, response: head } = await openai.chat.completions.create({ model: smolName, messages, max_tokens: 4000, stream: true }).withResponse();
    const leftId = head.headers.get('x-request-id')!;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) break; // leaving the loop aborts the request
    }
    const cancelled = await waitFor('the model server to stop the generation', 30_000, async () => /generation cancelled, the client went away: after (\d+) of at most (\d+) tokens/.exec(smol.stderr()) ?? undefined, 100);
    const [done, most] = [Number(cancelled[1]), Number(cancelled[2])];
    console.log(`# the left stream stopped after ${done} of at most ${most} tokens`);
    assert.equal(most, 4000);
    assert.ok(done < 200, `stopped early: ${done} tokens`);
    t0 = performance.now();
    const next = await openai.chat.completions.create({ model: smolName, messages, max_tokens: 4 });
    assert.ok(next.choices[0].message.content!.length > 0);
    console.log(`# the next request was answered in ${(performance.now() - t0).toFixed(0)} ms`);

    // A whole (non-streamed) answer whose client leaves before it comes stops the same way.
    const leaving = new AbortController();
    const pending = openai.chat.completions.create({ model: smolName, messages, max_tokens: 4000 }, { signal: leaving.signal });
    setTimeout(() => leaving.abort(), 1500);
    await assert.rejects(pending, OpenAI.APIUserAbortError);
    const stops = await waitFor('the model server to stop the second generation', 30_000, async () => {
      const all = [...smol.stderr().matchAll(/generation cancelled, the client went away: after (\d+) of at most (\d+) tokens/g)];
      return all.length >= 2 ? all : undefined;
    }, 100);
    assert.ok(Number(stops[1][1]) < 200 && Number(stops[1][2]) === 4000, stops[1][0]);

    // The left stream is recorded with 499 (the client's doing) and what it had sent; a refusal with its 400.
    await assert.rejects(openai.chat.completions.create({ model: smolName, messages, frobnicate: true } as any), OpenAI.BadRequestError);
    const left = await waitFor('the left stream\'s record', 15_000, async () => database.selectFrom('gateway_requests').selectAll().where('id', '=', leftId).executeTakeFirst(), 100);
    assert.deepEqual([left.status, left.streamed, left.error], [499, true, 'the client closed the stream before its end']);
    assert.ok(left.response && left.response.length > 0, JSON.stringify(left));
    await gatewayLogSettled(database, smolVersion, 6);
    const statuses = (await database.selectFrom('gateway_requests').select('status').where('model_version_id', '=', smolVersion).execute()).map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 200, 400, 499, 499]);
    // The canary judges model errors (5xx) only: a refused request and a client that left cannot roll back a healthy version.
    const activities = createActivities({ cfg, db: database, store: store(), slots: TrainerSlots.unlimited(), trainerServer });
    const health = await activities.canaryHealth({ modelVersionId: smolVersion, since: since.toISOString(), canary: canarySchema.parse({ minRequests: 1, maxErrorRate: 0, maxP95LatencyMs: 3_600_000 }) });
    assert.deepEqual([health.requests, health.errors, health.breach], [6, 0, undefined]);

    smol.proc.kill('SIGTERM');
    await new Promise((r) => smol.proc.once('exit', r));
    const finished = JSON.parse(smol.stdout().trim().split('\n').at(-1)!);
    // Five decoded (the refusal never reached the model), two of them cancelled.
    assert.deepEqual([finished.event, finished.requests, finished.cancelled], ['finished', 5, 2]);
    await setRoutes(database, smolName, []);
  });

  test('the second model server answered exactly the requests the gateway routed to it', { timeout: 30_000 }, async () => {
    const routedToV2 = [...tally].filter(([k]) => k.startsWith(`${v2}|`)).reduce((n, [k, c]) => n + (k.endsWith('|400') ? 0 : c), 0);
    upstreamB.proc.kill('SIGTERM');
    await new Promise((r) => upstreamB.proc.once('exit', r));
    const finished = JSON.parse(upstreamB.stdout().trim().split('\n').at(-1)!);
    assert.equal(finished.event, 'finished');
    // Plus the three direct calls of the normalization test (two completions, one chat), and the OpenAI client's.
    assert.equal(finished.requests, routedToV2 + 3 + clientToV2);
  });
});
