/**
 * The API's HTTP layer without a stack (Fastify's inject, stub dependencies): replies are serialized through
 * their contract schemas (a reply that does not match is a logged 500, never a malformed body), the OpenAPI
 * document lists every route with its security, role and schemas, and runs and schedules share one spec
 * intake that refuses the same bad spec with the same field paths.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { DEFAULT_LIMITS, repoRoot } from '@tempered/config';
import { parseSpec } from '@tempered/spec';
import { readFileSync } from 'node:fs';
import type { Principal } from '../../services/api/src/auth';
import type { ApiDeps } from '../../services/api/src/deps';
import { buildServer } from '../../services/api/src/server';

/** Who the stub authenticator says the caller is (per test). */
let caller: Principal | undefined = { user: 'operator', role: 'operator', via: 'token' };
const unreachable = new Proxy({}, { get: () => { throw new Error('no backend in this test'); } });
const deps = {
  auth: { authenticate: async () => caller },
  db: unreachable,
  temporal: unreachable,
  store: unreachable,
  hub: unreachable,
  // The spec intake reads the limits and the allowed data roots; the playground where the gateway is (never called here).
  cfg: { limits: DEFAULT_LIMITS, localDataRoots: [path.join(repoRoot, 'examples')], dataDir: path.join(repoRoot, '.tempered', 'unit-test-data'), gateway: { url: 'http://127.0.0.1:9', key: undefined } },
} as unknown as ApiDeps;

let app: FastifyInstance;
before(async () => {
  app = await buildServer(deps);
});
after(() => app.close());

const demo = () => parseSpec(readFileSync(path.join(repoRoot, 'examples', 'demo', 'pipeline.yaml'), 'utf8')) as unknown as Record<string, any>;
const post = (url: string, body: unknown) => app.inject({ method: 'POST', url, headers: { authorization: 'Bearer t', 'content-type': 'application/json' }, payload: JSON.stringify(body) });

describe('replies are checked against their schemas', () => {
  test('a reply that does not match its schema is a logged 500, not a malformed body', async () => {
    caller = { user: 42 as unknown as string, role: 'operator', via: 'token' }; // Me.username must be a string
    const logged: string[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => void logged.push(args.map(String).join(' '));
    try {
      const res = await app.inject({ method: 'GET', url: '/api/me', headers: { authorization: 'Bearer t' } });
      assert.equal(res.statusCode, 500);
      assert.deepEqual(res.json(), { error: 'internal error; see the API log' });
      assert.doesNotMatch(res.body, /42/);
      assert.ok(logged.some((l) => /GET \/api\/me: the response does not match its schema/.test(l) && /username/.test(l)), logged.join('\n'));
    } finally {
      console.error = original;
      caller = { user: 'operator', role: 'operator', via: 'token' };
    }
  });

  test('a matching reply is serialized through its schema', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/me', headers: { authorization: 'Bearer t' } });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { username: 'operator', role: 'operator', can: { read: true, start: true, label: true, approve: false, use: true, admin: false } });
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
  });
});

describe('errors keep the API shape', () => {
  test('no caller 401, unknown route 404, wrong method 405, bad id 404, body too large 413, bad JSON 400', async () => {
    caller = undefined;
    assert.equal((await app.inject({ method: 'GET', url: '/api/runs' })).statusCode, 401);
    assert.equal((await app.inject({ method: 'GET', url: '/api/nothing-here' })).statusCode, 401, 'who asks is checked first');
    caller = { user: 'operator', role: 'operator', via: 'token' };
    const h = { authorization: 'Bearer t' };
    const missing = await app.inject({ method: 'GET', url: '/api/nothing-here', headers: h });
    assert.equal(missing.statusCode, 404);
    assert.match(missing.json().error, /no route GET \/api\/nothing-here/);
    assert.equal((await app.inject({ method: 'DELETE', url: '/api/runs', headers: h })).statusCode, 405);
    assert.equal((await app.inject({ method: 'PUT', url: '/', headers: h })).statusCode, 405);
    assert.equal((await app.inject({ method: 'GET', url: '/api/artifacts/not-a-number', headers: h })).statusCode, 404);
    const big = await app.inject({ method: 'POST', url: '/api/tokens', headers: { ...h, 'content-type': 'application/json' }, payload: `{"name":"${'x'.repeat(1_100_000)}"}` });
    assert.equal(big.statusCode, 413);
    assert.match(big.json().error, /request body over/);
    const junk = await app.inject({ method: 'POST', url: '/api/tokens', headers: { ...h, 'content-type': 'application/json' }, payload: '{not json' });
    assert.equal(junk.statusCode, 400);
    assert.match(junk.json().error, /not valid JSON/);
    const extra = await post('/api/tokens', { name: 'n', colour: 'blue' });
    assert.equal(extra.statusCode, 400);
    assert.deepEqual(extra.json().issues, [{ path: '', message: 'unknown field(s): colour' }]);
  });

  test('roles and the CSRF rule answer 403 with the same texts', async () => {
    caller = { user: 'vic', role: 'viewer', via: 'token' };
    const res = await post('/api/runs/r1/approval', { decision: 'approve' });
    assert.equal(res.statusCode, 403);
    assert.match(res.json().error, /^vic \(viewer\) may not decide a run's deployment gate .*; an approver may/);
    caller = { user: 'operator', role: 'operator', via: 'session' };
    const forged = await app.inject({ method: 'POST', url: '/api/tokens', headers: { 'content-type': 'application/json' }, payload: '{"name":"x"}' });
    assert.equal(forged.statusCode, 403);
    assert.match(forged.json().error, /x-tempered/);
    caller = { user: 'operator', role: 'operator', via: 'token' };
  });
});

describe('the OpenAPI document is generated from the schemas', () => {
  const ROUTES = [
    'post /api/login', 'post /api/logout', 'get /api/me', 'get /api/users', 'post /api/users', 'post /api/tokens', 'get /api/audit',
    'get /api/spec-schema', 'get /api/examples', 'get /api/runs', 'post /api/runs', 'get /api/runs/{id}', 'get /api/runs/{id}/events', 'get /api/events',
    'get /api/runs/{id}/logs', 'get /api/runs/{id}/answers', 'post /api/runs/{id}/cancel', 'post /api/runs/{id}/approval', 'get /api/labeling', 'get /api/runs/{id}/pairs/next',
    'post /api/pairs/{id}/label', 'post /api/playground/chat', 'post /api/playground/preference', 'post /api/playground/rating', 'get /api/approvals', 'get /api/models', 'get /api/models/{id}/lineage', 'get /api/models/{id}/card', 'get /api/models/{id}/download', 'get /api/base-models', 'get /api/datasets',
    'get /api/datasets/{id}', 'get /api/artifacts/{id}', 'get /api/deployments', 'post /api/runs/{id}/canary', 'post /api/deployments/{name}/rollback', 'get /api/schedules', 'post /api/schedules', 'post /api/models/{id}/evaluations', 'get /api/models/{id}/evaluations', 'get /api/evaluations', 'get /api/evaluations/{id}', 'get /api/evaluations/{id}/answers',
    'get /api/schedules/{id}', 'post /api/schedules/{id}/pause', 'post /api/schedules/{id}/resume', 'post /api/schedules/{id}/trigger',
    'post /api/schedules/{id}/backfill', 'delete /api/schedules/{id}',
    'patch /api/users/{username}', 'post /api/users/{username}/password', 'post /api/users/{username}/unlock', 'get /api/tokens', 'delete /api/tokens/{id}',
  ];

  test('every route is listed with its security, role, request and response schemas', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/api/openapi.json' })).json();
    assert.equal(doc.openapi, '3.1.0');
    const listed = Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`));
    assert.deepEqual([...listed].sort(), [...ROUTES].sort());
    assert.deepEqual(doc.security, [{ bearer: [] }, { session: [] }]);
    for (const [p, ops] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
      for (const [method, op] of Object.entries(ops)) {
        const where = `${method} ${p}`;
        assert.match(op.description, p === '/api/login' ? /No authentication/ : /^Allowed: /, where);
        if (p === '/api/login') assert.deepEqual(op.security, [], 'sign-in needs no caller');
        else assert.equal(op.security, undefined, `${where} uses the document's bearer or session security`);
        const ok = op.responses['200'] ?? op.responses['201'] ?? op.responses['202'];
        assert.ok(ok, `${where} has a success response`);
        const [content] = Object.values(ok.content ?? {}) as Array<{ schema?: unknown }>;
        assert.ok(content?.schema, `${where} has a success schema`);
        assert.ok(op.responses['4XX']?.content?.['application/json']?.schema ?? op.responses['4xx']?.content, `${where} documents its error shape`);
        if (method === 'post' && !['/api/logout', '/api/runs/{id}/cancel', '/api/users/{username}/unlock'].includes(p)) assert.ok(op.requestBody?.content?.['application/json']?.schema, `${where} has a request schema`);
        if (p.includes('{id}')) assert.ok(op.parameters?.some((x: any) => x.in === 'path' && x.name === 'id'), `${where} has its id parameter`);
      }
    }
    const rollback = doc.paths['/api/deployments/{name}/rollback'].post;
    assert.match(rollback.description, /approver/);
    assert.deepEqual(rollback.requestBody.content['application/json'].schema.required, ['reason'], 'a rollback needs a reason; the version is optional');
    const detail = doc.paths['/api/runs/{id}'].get.responses['200'].content['application/json'].schema;
    assert.equal(detail.$ref, '#/components/schemas/RunDetail');
    assert.ok(doc.components.schemas.RunDetail.properties.datasetVersion, 'RunDetail is described field by field');
    assert.ok(doc.components.schemas.PipelineSpec);
  });
});

describe('one spec intake for runs and schedules', () => {
  const issuesOf = async (url: string, body: Record<string, unknown>) => {
    const res = await post(url, body);
    assert.equal(res.statusCode, 400, `${url}: ${res.body}`);
    return (res.json().issues as Array<{ path: string }>).map((i) => i.path).sort();
  };
  const both = async (spec: Record<string, unknown>, extra: Record<string, unknown> = {}) => {
    const run = await issuesOf('/api/runs', { spec, ...extra });
    const schedule = await issuesOf('/api/schedules', { id: 'intake-test', spec, every: '1h', ...extra });
    assert.deepEqual(schedule, run);
    return run;
  };

  test('a bad field has the same path from either route', async () => {
    const spec = demo();
    spec.train = { ...spec.train, steps: -1 };
    assert.deepEqual(await both(spec, { specDir: '/somewhere' }), ['train.steps']);
  });

  test('relative data paths are refused by both when the spec has no folder', async () => {
    assert.deepEqual(await both(demo()), ['data.sources.0.uri', 'data.sources.1.uri', 'rlhf.preferences.uri']);
  });

  test('a test suite is refused at its field: a missing file, an unknown metric, a metric without choices, a bound on an unlisted metric', async () => {
    const spec = demo();
    const dir = path.join(repoRoot, 'examples', 'demo');
    const suite = (extra: Record<string, unknown>) => ({ name: 'digits', source: { uri: path.join(dir, 'no-such-suite.jsonl') }, metrics: ['exact_match'], ...extra });
    spec.test = { ...spec.test, suites: [suite({})] };
    assert.deepEqual(await both(spec, { specDir: dir }), ['test.suites.0.source.uri']);
    spec.test = { ...spec.test, suites: [suite({ name: 'a', metrics: ['bleu'] }), suite({ name: 'c', min: { chrf: 0.5 } })] };
    assert.deepEqual(await both(spec, { specDir: dir }), ['test.suites.0.metrics.0', 'test.suites.1.min.chrf']);
    spec.test = { ...spec.test, suites: [suite({ name: 'b', metrics: ['accuracy'] })] };
    assert.deepEqual(await both(spec, { specDir: dir }), ['test.suites.0.metrics.0']);
    spec.test = { ...spec.test, suites: [suite({}), suite({})] };
    assert.deepEqual(await both(spec, { specDir: dir }), ['test.suites']);
  });

  test('a judged or safety suite is refused at its field: win_rate without a judge, a judge of no kind, a reward judge without a reward model', async () => {
    const spec = demo();
    const dir = path.join(repoRoot, 'examples', 'demo');
    const suite = (extra: Record<string, unknown>) => ({ name: 'judged', source: { uri: path.join(dir, 'pipeline.yaml') }, metrics: ['win_rate'], ...extra });
    spec.test = { ...spec.test, suites: [suite({}), suite({ name: 'b', judge: 'oracle' }), suite({ name: 'c', metrics: ['exact_match'], judge: 'reward' })] };
    // Suite 2's judge judges nothing, and would need a reward model the demo's DPO does not train: two issues.
    assert.deepEqual(await both(spec, { specDir: dir }), ['test.suites.0.judge', 'test.suites.1.judge', 'test.suites.2.judge', 'test.suites.2.judge']);
    // The demo's RLHF is DPO, which trains no reward model to judge with.
    spec.test = { ...spec.test, suites: [suite({ judge: 'reward' }), suite({ name: 'safety', metrics: ['unsafe_rate'], max: { unsafe_rate: 0.1, win_rate: 0.5 } })] };
    assert.deepEqual(await both(spec, { specDir: dir }), ['test.suites.0.judge', 'test.suites.1.max.win_rate']);
  });

  test('a classifier (model.type tfidf-logreg) is refused at each field that does not apply to it', async () => {
    const spec = demo();
    const dir = path.join(repoRoot, 'examples', 'demo');
    spec.model = { ...spec.model, type: 'tfidf-logreg', base: { name: 'smollm2-135m-instruct' } };
    spec.train = { ...spec.train, lora: { r: 8 }, sweep: { learningRates: [0.001, 0.01] }, gpus: 2 };
    spec.deploy = { ...spec.deploy, engine: 'llamacpp' };
    // The demo aligns with DPO and lists no labels.
    assert.deepEqual(await both(spec, { specDir: dir }), ['deploy.engine', 'model.base', 'rlhf.method', 'test.choices', 'train.gpus', 'train.lora', 'train.sweep']);
    spec.model = { ...spec.model, type: 'tfidf-logreg', base: undefined, classifier: { c: 0 } };
    spec.train = { ...spec.train, lora: undefined, sweep: undefined, gpus: 1 };
    spec.deploy = { ...spec.deploy, engine: 'tempered' };
    spec.rlhf = { ...spec.rlhf, method: 'none' };
    spec.test = { ...spec.test, choices: ['positive', 'negative'] };
    assert.deepEqual(await both(spec, { specDir: dir }), ['model.classifier.c']);
  });

  test('a YAML body to POST /api/runs goes through the same intake', async () => {
    const res = await app.inject({ method: 'POST', url: '/api/runs', headers: { authorization: 'Bearer t', 'content-type': 'application/yaml' }, payload: readFileSync(path.join(repoRoot, 'examples', 'demo', 'pipeline.yaml'), 'utf8') });
    assert.equal(res.statusCode, 400);
    assert.deepEqual(res.json().issues.map((i: any) => i.path), ['data.sources.0.uri', 'data.sources.1.uri', 'rlhf.preferences.uri']);
  });

  test('an example outside examples/ is refused at `example` by both', async () => {
    assert.deepEqual(await issuesOf('/api/runs', { example: '../package.yaml' }), ['example']);
    assert.deepEqual(await issuesOf('/api/schedules', { id: 'intake-test', example: '../package.yaml', every: '1h' }), ['example']);
  });
});
