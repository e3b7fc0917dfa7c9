/**
 * The API against the real test stack: sign-in and sessions, roles, the CSRF rule for cookie-borne
 * changes, the audit log, labeling (progress, double labels), live events, and bad input of every kind
 * (spec fields, request fields, paths, search text) refused with the field and the reason.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { notifyChange, recordMetrics } from '@tempered/db';
import { apiCall, cfg, credentialsOf, db, demoSpec, uniqueId } from './../support';

const database = db();
after(() => database.destroy());

async function login(username: string, password: string) {
  const res = await fetch(`${cfg.api.url}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
  return { status: res.status, body: (await res.json()) as any, cookie: res.headers.get('set-cookie') ?? '' };
}

/** A run row with no workflow behind it, for routes that read the database. */
async function fakeRun(spec: Record<string, unknown> = {}): Promise<string> {
  const id = uniqueId('api-test');
  await database.insertInto('runs').values({ id, name: 'api-test', spec: JSON.stringify(spec), status: 'waiting-labels', requested_by: 'operator' }).execute();
  return id;
}

describe('sign-in and sessions', () => {
  test('a wrong password is refused; the right one sets an HttpOnly session cookie', async () => {
    const wrong = await login('operator', 'not-the-password');
    assert.equal(wrong.status, 401);
    assert.match(wrong.body.error, /wrong username or password/);
    const ok = await login('operator', credentialsOf('operator').password);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.user.role, 'operator');
    assert.equal(ok.body.user.can.approve, false);
    assert.match(ok.cookie, /tempered_session=tms_[^;]+; HttpOnly; SameSite=Strict/);
  });

  test('a session cookie reads; a change needs the x-tempered header; logout revokes it', async () => {
    const { cookie } = await login('operator', credentialsOf('operator').password);
    const session = cookie.split(';')[0];
    const me = await fetch(`${cfg.api.url}/api/me`, { headers: { cookie: session } });
    assert.equal(me.status, 200);
    assert.equal(((await me.json()) as any).username, 'operator');
    const forged = await fetch(`${cfg.api.url}/api/runs`, { method: 'POST', headers: { cookie: session, 'content-type': 'application/json' }, body: JSON.stringify({ spec: demoSpec() }) });
    assert.equal(forged.status, 403);
    assert.match(((await forged.json()) as any).error, /x-tempered/);
    const out = await fetch(`${cfg.api.url}/api/logout`, { method: 'POST', headers: { cookie: session, 'x-tempered': '1' } });
    assert.equal(out.status, 200);
    await new Promise((r) => setTimeout(r, 5100)); // the authenticator caches a token for 5 s
    assert.equal((await fetch(`${cfg.api.url}/api/me`, { headers: { cookie: session } })).status, 401);
  });

  test('five wrong passwords lock the user for a while', async () => {
    const name = `locky${Date.now().toString(36)}`;
    assert.equal((await apiCall('POST', '/api/users', 'admin', { username: name, password: 'correct horse battery', role: 'viewer' })).status, 201);
    for (let i = 0; i < 5; i++) assert.equal((await login(name, 'wrong')).status, 401);
    assert.equal((await login(name, 'correct horse battery')).status, 429);
  });
});

describe('roles', () => {
  const viewer = { username: `viewer${Date.now().toString(36)}`, password: 'a viewer password' };
  let viewerToken: { token: string };

  before(async () => {
    const created = await apiCall('POST', '/api/users', 'admin', { ...viewer, role: 'viewer' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    viewerToken = { token: (await login(viewer.username, viewer.password)).body.token };
  });

  test('a viewer reads but may not start, approve, label or manage users', async () => {
    assert.equal((await apiCall('GET', '/api/runs', viewerToken)).status, 200);
    assert.equal((await apiCall('POST', '/api/runs', viewerToken, { spec: demoSpec() })).status, 403);
    const approve = await apiCall('POST', '/api/runs/some-run/approval', viewerToken, { decision: 'approve' });
    assert.equal(approve.status, 403);
    assert.match(approve.body.error, /an approver may/);
    assert.equal((await apiCall('POST', '/api/pairs/1/label', viewerToken, { label: 'a' })).status, 403);
    assert.equal((await apiCall('POST', '/api/users', viewerToken, { username: 'mallory', password: 'long enough pw', role: 'admin' })).status, 403);
    const me = await apiCall('GET', '/api/me', viewerToken);
    assert.deepEqual(me.body.can, { read: true, start: false, label: false, approve: false, use: false, admin: false });
  });

  test('operators may not decide gates; approvers may not start runs', async () => {
    assert.equal((await apiCall('POST', '/api/runs/some-run/approval', 'operator', { decision: 'approve' })).status, 403);
    assert.equal((await apiCall('POST', '/api/runs', 'approver', { spec: demoSpec() })).status, 403);
  });

  test('user creation is audited, with the actor', async () => {
    const rows = await database.selectFrom('audit_log').selectAll().where('target', '=', `user:${viewer.username}`).execute();
    assert.equal(rows.length, 1);
    assert.equal(rows[0].actor, 'admin');
    assert.equal(rows[0].action, 'user.create');
  });

  test('a bad new user is refused field by field', async () => {
    const res = await apiCall('POST', '/api/users', 'admin', { username: 'X', password: 'short', role: 'king' });
    assert.equal(res.status, 400);
    assert.deepEqual(res.body.issues.map((i: any) => i.path).sort(), ['password', 'role', 'username']);
  });
});

describe('bad input never reaches a path or SQL of the client', () => {
  test('an example outside examples/ is refused', async () => {
    const res = await apiCall('POST', '/api/runs', 'operator', { example: '../../../etc/passwd.yaml' });
    assert.equal(res.status, 400);
    assert.equal(res.body.issues[0].path, 'example');
  });

  test('a spec sent as text with relative data paths is refused at the field, not at ingest minutes later', async () => {
    const res = await apiCall('POST', '/api/runs', 'operator', { spec: demoSpec() });
    assert.equal(res.status, 400);
    assert.deepEqual(res.body.issues.map((i: any) => i.path), ['data.sources.0.uri', 'data.sources.1.uri', 'rlhf.preferences.uri']);
    assert.match(res.body.issues[0].message, /relative/);
  });

  test('search text is data, not SQL', async () => {
    const before = (await database.selectFrom('runs').select(database.fn.countAll().as('n')).executeTakeFirstOrThrow()).n;
    const res = await apiCall('GET', `/api/runs?q=${encodeURIComponent("x'; drop table runs; --")}`, 'operator');
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.runs, []);
    const res2 = await apiCall('GET', `/api/runs?q=${encodeURIComponent('%')}`, 'operator');
    assert.deepEqual(res2.body.runs, [], 'a % is matched literally');
    assert.equal((await database.selectFrom('runs').select(database.fn.countAll().as('n')).executeTakeFirstOrThrow()).n, before);
  });

  test('unknown statuses, fields and artifacts get a 4xx naming the problem', async () => {
    const status = await apiCall('GET', '/api/runs?status=bogus', 'operator');
    assert.equal(status.status, 400);
    assert.equal(status.body.issues[0].path, 'status');
    const extra = await apiCall('POST', '/api/runs', 'operator', { spec: demoSpec(), sneaky: true });
    assert.equal(extra.status, 400);
    assert.match(extra.body.error, /sneaky/);
    assert.equal((await apiCall('GET', '/api/artifacts/999999999', 'operator')).status, 404);
    assert.equal((await apiCall('GET', '/api/artifacts/..%2F..%2Fcredentials.json', 'operator')).status, 404);
    const junk = await fetch(`${cfg.api.url}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' });
    assert.equal(junk.status, 400);
  });

  test('the dashboard host never serves a file outside its build', async () => {
    const res = await fetch(`${cfg.api.url}/..%2F..%2F..%2Fpackage.json`);
    assert.notEqual(res.status, 500);
    assert.doesNotMatch(await res.text(), /"workspaces"/);
  });

  test('the OpenAPI description lists the routes with their roles and request schemas', async () => {
    const doc: any = await (await fetch(`${cfg.api.url}/api/openapi.json`)).json();
    assert.equal(doc.openapi, '3.1.0');
    const approval = doc.paths['/api/runs/{id}/approval'].post;
    assert.match(approval.description, /approver/);
    assert.deepEqual(approval.requestBody.content['application/json'].schema.properties.decision.enum, ['approve', 'reject']);
    assert.ok(doc.paths['/api/pairs/{id}/label']);
  });
});

describe('labeling', () => {
  test('pairs are served in order, labeled once each, counted toward what the run needs, and audited', async () => {
    const runId = await fakeRun({ rlhf: { source: 'labels', labels: { required: 2 } } });
    await database
      .insertInto('preference_pairs')
      .values([0, 1, 2].map((idx) => ({ run_id: runId, idx, prompt: `p${idx}`, response_a: 'a', response_b: 'b', source: 'model-samples' })))
      .execute();
    const queue = await apiCall('GET', '/api/labeling', 'operator');
    assert.ok(queue.body.runs.some((r: any) => r.runId === runId && r.required === 2 && r.pairs === 3 && r.labeled === 0));
    const first = await apiCall('GET', `/api/runs/${runId}/pairs/next`, 'operator');
    assert.equal(first.body.pair.prompt, 'p0');
    const labeled = await apiCall('POST', `/api/pairs/${first.body.pair.id}/label`, 'operator', { label: 'b' });
    assert.equal(labeled.status, 200, JSON.stringify(labeled.body));
    assert.deepEqual(labeled.body.progress, { required: 2, labeled: 1, pairs: 3 });
    assert.equal((await apiCall('POST', `/api/pairs/${first.body.pair.id}/label`, 'admin', { label: 'a' })).status, 409);
    assert.equal((await apiCall('GET', `/api/runs/${runId}/pairs/next`, 'operator')).body.pair.prompt, 'p1');
    const bad = await apiCall('POST', `/api/pairs/${first.body.pair.id}/label`, 'operator', { label: 'c' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.issues[0].path, 'label');
    const audit = await database.selectFrom('audit_log').selectAll().where('target', '=', `run:${runId}`).execute();
    assert.deepEqual(audit.map((a) => [a.actor, a.action]), [['operator', 'label']]);
  });

  test('a run that does not take labels says so', async () => {
    const runId = await fakeRun({});
    const res = await apiCall('GET', `/api/runs/${runId}/pairs/next`, 'operator');
    assert.equal(res.status, 404);
    assert.match(res.body.error, /rlhf.source/);
  });
});

describe('live events', () => {
  test('a run stream sends a snapshot, then only the new metric points and log lines', async () => {
    const runId = await fakeRun({});
    await recordMetrics(database, runId, 'train', [{ name: 'loss', step: 1, value: 5 }]);
    const ctrl = new AbortController();
    const res = await fetch(`${cfg.api.url}/api/runs/${runId}/events`, { headers: { authorization: `Bearer ${credentialsOf('operator').token}` }, signal: ctrl.signal });
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const reader = res.body!.getReader();
    let text = '';
    const until = async (pattern: RegExp) => {
      const deadline = Date.now() + 10_000;
      while (!pattern.test(text)) {
        const left = deadline - Date.now();
        const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no ${pattern} in ${text}`)), Math.max(0, left)));
        const { value } = await Promise.race([reader.read(), timeout]);
        text += new TextDecoder().decode(value);
      }
    };
    await until(/event: snapshot\ndata: .*"train\.loss":\[\[1,5\]\]/);
    await recordMetrics(database, runId, 'train', [{ name: 'loss', step: 2, value: 4 }]);
    await until(/event: metrics\ndata: \{"points":\[\{"stage":"train","name":"loss","step":2,"value":4\}\]\}/);
    await database.insertInto('run_logs').values({ run_id: runId, stage: 'train', line: 'sft: step 2/2 loss 4.0000' }).execute();
    await notifyChange(database, runId, 'logs');
    await until(/event: logs\ndata: .*sft: step 2\/2/);
    assert.doesNotMatch(text, /"step":1,"value":5\}\]\}/, 'the first point is not sent again');
    ctrl.abort();
  });
});
