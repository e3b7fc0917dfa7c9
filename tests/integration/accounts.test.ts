/**
 * Accounts and approvals against the real test stack (issue 14): sign-in throttled per client and user and
 * answered in the same time whether the user exists, admin unlock; disabling users, changing roles and
 * passwords, token expiry, the bound on tokens minted from a session and revocation, each at once and audited;
 * the four-eyes rule applied to the person behind a schedule or trigger; and gate decisions that count only
 * when signed by the API, even for a caller who reaches Temporal directly.
 *
 * Sign-ins come from different loopback addresses (127.0.0.x), which the API sees as different clients.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Client, type WorkflowHandle, WorkflowUpdateFailedError } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { verifyApproval } from '@tempered/activities';
import { approvalKey, approvalSignature } from '@tempered/config';
import type { PipelineInput, PipelineProgress, RetrainTriggerInput, RetrainTriggerOutcome } from '@tempered/contract';
import type { PipelineSpec } from '@tempered/spec';
import { approveDeploymentUpdate, progressQuery, RETRAIN_WORKFLOW_TYPE, taskQueueFor, WORKFLOW_TYPE } from '@tempered/workflows';
import { apiCall, cfg, db, demoSpec, quietWorkerLogs, repoRoot, temporalClient, uniqueId, waitFor } from '../support';
import { workflowCode } from '../workflows/histories';
import { stubActivities } from '../workflows/stubs';

const database = db();
after(() => database.destroy());

let lastOctet = 10 + Math.floor(Math.random() * 200);
/** A loopback address no other test of this file signs in from: a client of its own. */
const newClient = () => `127.0.${Math.floor(Math.random() * 250)}.${lastOctet++ % 250 + 2}`;

/** POST /api/login from `client` (a loopback source address); the answer and how long it took. */
function loginFrom(client: string, username: string, password: string): Promise<{ status: number; body: any; cookie: string; ms: number }> {
  const url = new URL(`${cfg.api.url}/api/login`);
  const payload = JSON.stringify({ username, password });
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', localAddress: client, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
      (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, body: JSON.parse(text), cookie: String(res.headers['set-cookie'] ?? '').split(';')[0], ms: Number(process.hrtime.bigint() - t0) / 1e6 }),
        );
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** A request with a session cookie (and the CSRF header a cookie-borne change needs). */
async function withSession(cookie: string, method: string, route: string, body?: unknown) {
  const res = await fetch(`${cfg.api.url}${route}`, {
    method,
    headers: { cookie, 'x-tempered': '1', ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
}

async function newUser(role: string, password = 'a long enough password'): Promise<{ username: string; password: string; token: string }> {
  const username = `acct${uniqueId('u').replace(/[^a-z0-9]/g, '').slice(-12)}`;
  const created = await apiCall('POST', '/api/users', 'admin', { username, password, role });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const session = await loginFrom(newClient(), username, password);
  assert.equal(session.status, 200, JSON.stringify(session.body));
  const minted = await withSession(session.cookie, 'POST', '/api/tokens', { name: 'test' });
  assert.equal(minted.status, 201, JSON.stringify(minted.body));
  return { username, password, token: minted.body.token };
}

const auditActions = async (target: string) => ((await apiCall('GET', `/api/audit?target=${encodeURIComponent(target)}`, 'admin')).body.entries as Array<{ action: string; actor: string }>).map((e) => e.action);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

describe('sign-in throttling', () => {
  test('five wrong passwords lock that user from that client only; an admin unlocks at once', async () => {
    const u = await newUser('viewer');
    const attacker = newClient();
    for (let i = 0; i < 5; i++) assert.equal((await loginFrom(attacker, u.username, 'wrong password')).status, 401);
    const locked = await loginFrom(attacker, u.username, u.password);
    assert.equal(locked.status, 429);
    assert.match(locked.body.error, new RegExp(`too many failed sign-ins for ${u.username} from this client`));
    // The user, elsewhere, is not locked out by someone else's guessing.
    assert.equal((await loginFrom(newClient(), u.username, u.password)).status, 200);

    assert.equal((await apiCall('POST', `/api/users/${u.username}/unlock`, 'operator')).status, 403, 'only an admin unlocks');
    const unlocked = await apiCall('POST', `/api/users/${u.username}/unlock`, 'admin');
    assert.equal(unlocked.status, 200, JSON.stringify(unlocked.body));
    assert.deepEqual(unlocked.body, { username: u.username, unlocked: 1 });
    assert.equal((await loginFrom(attacker, u.username, u.password)).status, 200);
    assert.ok((await auditActions(`user:${u.username}`)).includes('user.unlock'));
  });

  test('an unknown user is answered in about the time of a wrong password', async () => {
    const u = await newUser('viewer');
    const real: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 4; i++) {
      real.push((await loginFrom(newClient(), u.username, `wrong ${i}`)).ms);
      const r = await loginFrom(newClient(), `nobody${uniqueId('x').replace(/[^a-z0-9]/g, '')}`, `wrong ${i}`);
      assert.equal(r.status, 401);
      assert.equal(r.body.error, 'wrong username or password');
      unknown.push(r.ms);
    }
    // Before: the unknown user skipped scrypt and was answered ~10× faster.
    assert.ok(median(unknown) > median(real) / 3, `unknown ${median(unknown).toFixed(1)} ms vs real ${median(real).toFixed(1)} ms`);
  });
});

describe('users: disable, role, password', () => {
  test('disabling a user stops their tokens and sign-in at once; enabling restores them', async () => {
    const u = await newUser('operator');
    assert.equal((await apiCall('GET', '/api/me', { token: u.token })).status, 200); // now cached for 5 s
    const off = await apiCall('PATCH', `/api/users/${u.username}`, 'admin', { disabled: true, comment: 'left the team' });
    assert.equal(off.status, 200, JSON.stringify(off.body));
    assert.equal(off.body.username, u.username);
    assert.notEqual(off.body.disabled_at, null);
    assert.equal((await apiCall('GET', '/api/me', { token: u.token })).status, 401, 'no 5-second grace');
    assert.equal((await loginFrom(newClient(), u.username, u.password)).status, 401);
    const on = await apiCall('PATCH', `/api/users/${u.username}`, 'admin', { disabled: false });
    assert.equal(on.body.disabled_at, null);
    assert.equal((await apiCall('GET', '/api/me', { token: u.token })).status, 200);
    const actions = await auditActions(`user:${u.username}`);
    assert.ok(actions.includes('user.disable') && actions.includes('user.enable'), actions.join());
  });

  test('a role change holds at once; only an admin changes roles; the last admin stays', async () => {
    const u = await newUser('operator');
    assert.equal((await apiCall('GET', '/api/me', { token: u.token })).body.role, 'operator');
    assert.equal((await apiCall('PATCH', `/api/users/${u.username}`, 'operator', { role: 'admin' })).status, 403);
    const changed = await apiCall('PATCH', `/api/users/${u.username}`, 'admin', { role: 'viewer' });
    assert.equal(changed.status, 200);
    assert.equal(changed.body.role, 'viewer');
    assert.equal((await apiCall('GET', '/api/me', { token: u.token })).body.role, 'viewer');
    assert.equal((await apiCall('POST', '/api/runs', { token: u.token }, { spec: demoSpec() })).status, 403);
    assert.ok((await auditActions(`user:${u.username}`)).includes('user.role'));

    const empty = await apiCall('PATCH', `/api/users/${u.username}`, 'admin', {});
    assert.equal(empty.status, 400);
    assert.match(empty.body.error, /role/);
    assert.equal((await apiCall('PATCH', '/api/users/nobody-here', 'admin', { role: 'viewer' })).status, 404);
    const admins = (await apiCall('GET', '/api/users', 'admin')).body.users.filter((x: any) => x.role === 'admin' && x.disabled_at === null);
    assert.equal(admins.length, 1, 'this file creates no admin');
    const last = await apiCall('PATCH', '/api/users/admin', 'admin', { disabled: true });
    assert.equal(last.status, 409);
    assert.match(last.body.error, /last enabled admin/);
  });

  test("one's own password needs the current one; an admin sets anyone's; sessions are revoked", async () => {
    const u = await newUser('approver');
    const session = await loginFrom(newClient(), u.username, u.password);
    const missing = await apiCall('POST', `/api/users/${u.username}/password`, { token: u.token }, { password: 'another long password' });
    assert.equal(missing.status, 400);
    assert.match(missing.body.error, /^currentPassword: required/);
    const wrong = await apiCall('POST', `/api/users/${u.username}/password`, { token: u.token }, { password: 'another long password', currentPassword: 'nope' });
    assert.equal(wrong.status, 403);
    assert.match(wrong.body.error, /^currentPassword: wrong password/);
    const short = await apiCall('POST', `/api/users/${u.username}/password`, { token: u.token }, { password: 'short', currentPassword: u.password });
    assert.equal(short.status, 400);
    assert.match(short.body.error, /password/);
    assert.equal((await apiCall('POST', '/api/users/admin/password', { token: u.token }, { password: 'taking over admin' })).status, 403);

    const mine = await apiCall('POST', `/api/users/${u.username}/password`, { token: u.token }, { password: 'another long password', currentPassword: u.password });
    assert.equal(mine.status, 200, JSON.stringify(mine.body));
    assert.equal(mine.body.sessionsRevoked, 2); // newUser's session and this test's
    assert.equal((await withSession(session.cookie, 'GET', '/api/me')).status, 401, 'the old session ends at once');
    assert.equal((await apiCall('GET', '/api/me', { token: u.token })).status, 200, 'API tokens stay');
    assert.equal((await loginFrom(newClient(), u.username, u.password)).status, 401);
    assert.equal((await loginFrom(newClient(), u.username, 'another long password')).status, 200);

    const byAdmin = await apiCall('POST', `/api/users/${u.username}/password`, 'admin', { password: 'set by the admin' });
    assert.equal(byAdmin.status, 200);
    assert.equal((await loginFrom(newClient(), u.username, 'set by the admin')).status, 200);
    assert.deepEqual((await auditActions(`user:${u.username}`)).filter((a) => a === 'user.password'), ['user.password', 'user.password']);
  });
});

describe('tokens: expiry, the session bound, revocation', () => {
  const days = (iso: string) => (Date.parse(iso) - Date.now()) / 86_400_000;

  test('tokens expire: 90 days by default, at most 365; from a session at most 30', async () => {
    const fromToken = await apiCall('POST', '/api/tokens', 'operator', { name: 'script' });
    assert.equal(fromToken.status, 201);
    assert.ok(Math.abs(days(fromToken.body.expiresAt) - 90) < 0.01, fromToken.body.expiresAt);
    const year = await apiCall('POST', '/api/tokens', 'operator', { name: 'yearly', expiresInDays: 365 });
    assert.ok(Math.abs(days(year.body.expiresAt) - 365) < 0.01);
    const tooLong = await apiCall('POST', '/api/tokens', 'operator', { name: 'forever', expiresInDays: 366 });
    assert.equal(tooLong.status, 400);
    assert.match(tooLong.body.error, /expiresInDays/);

    const u = await newUser('viewer');
    const session = await loginFrom(newClient(), u.username, u.password);
    const fromSession = await withSession(session.cookie, 'POST', '/api/tokens', { name: 'from the dashboard' });
    assert.equal(fromSession.status, 201);
    assert.ok(Math.abs(days(fromSession.body.expiresAt) - 30) < 0.01, fromSession.body.expiresAt);
    const longFromSession = await withSession(session.cookie, 'POST', '/api/tokens', { name: 'long', expiresInDays: 31 });
    assert.equal(longFromSession.status, 400);
    assert.match(longFromSession.body.error, /^expiresInDays: at most 30/);
  });

  test('an expired token is refused', async () => {
    const u = await newUser('viewer');
    const listed = await apiCall('GET', '/api/tokens', { token: u.token });
    const id = listed.body.tokens.find((t: any) => t.kind === 'api').id;
    await database.updateTable('api_tokens').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', Number(id)).execute();
    await new Promise((r) => setTimeout(r, 5100)); // past the authenticator's cache
    assert.equal((await apiCall('GET', '/api/me', { token: u.token })).status, 401);
  });

  test("revoking holds at once; one's own or, for an admin, anyone's; listed and audited", async () => {
    const u = await newUser('operator');
    const other = await newUser('operator');
    const listed = await apiCall('GET', '/api/tokens', { token: u.token });
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.body.tokens.map((t: any) => t.kind).sort(), ['api', 'session']);
    const apiToken = listed.body.tokens.find((t: any) => t.kind === 'api');
    assert.equal((await apiCall('GET', `/api/tokens?user=${u.username}`, { token: other.token })).status, 403);
    assert.equal((await apiCall('DELETE', `/api/tokens/${apiToken.id}`, { token: other.token })).status, 404, "another's token is not theirs to see");
    assert.equal((await apiCall('GET', '/api/me', { token: u.token })).status, 200); // cached now
    const revoked = await apiCall('DELETE', `/api/tokens/${apiToken.id}`, { token: u.token });
    assert.equal(revoked.status, 200);
    assert.deepEqual(revoked.body, { id: apiToken.id, revoked: true });
    assert.equal((await apiCall('GET', '/api/me', { token: u.token })).status, 401, 'no 5-second grace');
    assert.equal((await apiCall('DELETE', `/api/tokens/${apiToken.id}`, 'admin')).status, 404, 'already revoked');

    const theirs = (await apiCall('GET', `/api/tokens?user=${other.username}`, 'admin')).body.tokens.find((t: any) => t.kind === 'api');
    assert.equal((await apiCall('DELETE', `/api/tokens/${theirs.id}`, 'admin')).status, 200);
    assert.equal((await apiCall('GET', '/api/me', { token: other.token })).status, 401);
    assert.ok((await auditActions(`user:${other.username}`)).includes('token.revoke'));
  });
});

describe('approvals: the person behind a run, and decisions signed by the API', () => {
  const pool = uniqueId('acct').toLowerCase();
  let client: Client;
  let closeClient: () => Promise<void>;
  let connection: NativeConnection;
  let worker: Worker;
  let running: Promise<unknown>;
  const stub = stubActivities({ retrainStarts: true });

  before(async () => {
    quietWorkerLogs();
    ({ client, close: closeClient } = await temporalClient());
    connection = await NativeConnection.connect({ address: cfg.temporal.address });
    const { bundle } = await workflowCode();
    // Stand-in stages, but the real signature check, with the stack's key.
    const activities = { ...stub.activities, verifyApproval: (i: Parameters<typeof verifyApproval>[1]) => verifyApproval({ cfg }, i) };
    worker = await Worker.create({ connection, taskQueue: taskQueueFor(pool), workflowBundle: bundle, activities });
    running = worker.run();
  });
  after(async () => {
    worker.shutdown();
    await running;
    await connection.close();
    await closeClient();
  });

  function specOnPool(): PipelineSpec {
    const spec = demoSpec();
    spec.pools = { data: pool, train: pool, rlhf: pool, eval: pool };
    return spec;
  }
  const atGate = (handle: WorkflowHandle) =>
    waitFor('the deployment gate', 30_000, async () => ((await handle.query(progressQuery)).gate.status === 'waiting' ? true : undefined));
  async function scheduledRunAtGate(responsible: string): Promise<WorkflowHandle> {
    const input: PipelineInput = { spec: specOnPool(), requestedBy: 'schedule:nightly', responsible };
    const handle = await client.workflow.start(WORKFLOW_TYPE, { taskQueue: taskQueueFor(pool), workflowId: uniqueId('acct-run'), args: [input] });
    await atGate(handle);
    return handle;
  }
  const refusal = async (p: Promise<unknown>): Promise<string> => {
    const err = await p.then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof WorkflowUpdateFailedError, String(err));
    return String((err.cause as Error | undefined)?.message);
  };

  test('the approval key is made once, mode 600, 32 random bytes; a file that holds none is refused', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'approval-key-'));
    const file = path.join(dir, 'keys', 'approval.key');
    const key = approvalKey(file);
    assert.equal(key.length, 32);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.match(readFileSync(file, 'utf8'), /^[0-9a-f]{64}\n$/);
    assert.deepEqual(approvalKey(file), key);
    const bad = path.join(dir, 'bad.key');
    writeFileSync(bad, 'not a key');
    assert.throws(() => approvalKey(bad), /does not hold an approval key/);
  });

  test('schedules and triggers record their creator as responsible for the runs they start', async () => {
    for (const mode of ['run', 'trigger'] as const) {
      const id = uniqueId(`acct-${mode}`).toLowerCase();
      const spec = { ...specOnPool(), ...(mode === 'trigger' ? { retrain: { feedback: { minNew: 5 }, checkEvery: '1h' } } : {}) };
      const created = await apiCall('POST', '/api/schedules', 'admin', { id, spec, specDir: path.join(repoRoot, 'examples', 'demo'), mode, every: '1h', paused: true });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const d = await client.schedule.getHandle(id).describe();
      const args = (d.action as { args?: Array<Record<string, unknown>> }).args ?? [];
      assert.equal(args[0]?.responsible, 'admin', `${mode}: ${JSON.stringify(args[0]).slice(0, 200)}`);
      assert.equal(args[0]?.requestedBy, `${mode === 'run' ? 'schedule' : 'trigger'}:${id}`);
      await apiCall('DELETE', `/api/schedules/${id}`, 'admin');
    }
  });

  test("a scheduled run's responsible person may not approve it; another approver may, through the API", async () => {
    const handle = await scheduledRunAtGate('admin');
    const own = await apiCall('POST', `/api/runs/${handle.workflowId}/approval`, 'admin', { decision: 'approve' });
    assert.equal(own.status, 409);
    assert.match(own.body.error, /^admin is responsible for this run .* cannot approve its deployment/);
    const ok = await apiCall('POST', `/api/runs/${handle.workflowId}/approval`, 'approver', { decision: 'approve', comment: 'looks right' });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.approver, 'approver');
    assert.equal((await handle.result()).status, 'deployed');
  });

  test('a decision sent to Temporal directly counts only with a valid signature of the API', async () => {
    const handle = await scheduledRunAtGate('alice');
    const send = (d: Record<string, unknown>) => handle.executeUpdate(approveDeploymentUpdate, { args: [{ decision: 'approve', approver: 'approver', ...d }] });
    assert.match(await refusal(send({})), /^the decision is not signed by the API/);
    const signedAt = new Date().toISOString();
    const forged = approvalSignature(Buffer.alloc(32, 7), { runId: handle.workflowId, decision: 'approve', approver: 'approver', signedAt });
    assert.match(await refusal(send({ signedAt, signature: forged })), /signature does not match/);
    // A signature of the API for another approver's decision does not carry over to this one.
    const key = approvalKey(cfg.approvalKeyFile);
    const bobs = approvalSignature(key, { runId: handle.workflowId, decision: 'approve', approver: 'bob', signedAt });
    assert.match(await refusal(send({ signedAt, signature: bobs })), /signature does not match/);
    const stale = new Date(Date.now() - 3_600_000).toISOString();
    assert.match(await refusal(send({ signedAt: stale, signature: approvalSignature(key, { runId: handle.workflowId, decision: 'approve', approver: 'approver', signedAt: stale }) })), /stale/);
    const gate: PipelineProgress['gate'] = (await handle.query(progressQuery)).gate;
    assert.equal(gate.status, 'waiting', 'no refused decision counted');
    assert.deepEqual(stub.log.of(handle.workflowId).approvals, []);

    const good = await send({ signedAt, signature: approvalSignature(key, { runId: handle.workflowId, decision: 'approve', approver: 'approver', signedAt }) });
    assert.equal(good.approver, 'approver');
    assert.equal((await handle.result()).status, 'deployed');
  });

  test('a triggered run carries its trigger creator as responsible, who may not approve it', async () => {
    const input: RetrainTriggerInput = { triggerId: uniqueId('acct-trigger'), spec: specOnPool(), requestedBy: 'trigger:acct', responsible: 'admin' };
    const outcome: RetrainTriggerOutcome = await client.workflow.execute(RETRAIN_WORKFLOW_TYPE, { taskQueue: taskQueueFor(pool), workflowId: uniqueId('acct-check'), args: [input] });
    assert.equal(outcome.decision, 'start');
    const run = client.workflow.getHandle(outcome.runId!);
    try {
      await atGate(run);
      const refused = await apiCall('POST', `/api/runs/${run.workflowId}/approval`, 'admin', { decision: 'approve' });
      assert.equal(refused.status, 409);
      assert.match(refused.body.error, /^admin is responsible for this run/);
    } finally {
      await run.terminate('test done').catch(() => {});
    }
  });
});
