/**
 * The CLI's wait for a run (services/cli/src/wait.ts) against a tiny fake API: an event stream that, like the
 * real one, stays open and sends a snapshot, then the run's changes. A canary that rolls back ends the run
 * `rolled-back`, a final status: the wait must return there, and `tempered approve` must say so and exit 1.
 * (The CLI once had its own list of final statuses without `rolled-back`, and `approve` waited forever.)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { RunDetail, RunStatus } from '@tempered/api-contract';
import { reached, waitForRun } from '../../services/cli/src/wait';

const RUN = 'demo-reverse-m1abc-123456';
const ERROR = 'canary rolled back: step 1 (10%): error rate 0.5 above 0.05';
const repoRoot = path.resolve(__dirname, '..', '..');

function detail(status: RunStatus): RunDetail {
  return {
    run: { id: RUN, name: 'demo-reverse', status, requested_by: 'operator', created_at: '2030-01-01T00:00:00Z', updated_at: '2030-01-01T00:05:00Z', error: status === 'rolled-back' ? ERROR : null, spec: { train: { steps: 10 } } },
    stages: [{ run_id: RUN, name: 'deploy', status: status === 'canary' ? 'running' : 'completed', attempts: 1, started_at: null, finished_at: null, error: null, summary: null }],
    artifacts: [],
    approvals: [],
    metrics: {},
    ...(status === 'rolled-back'
      ? {
          modelVersion: { id: 'demo-reverse-v2', name: 'demo-reverse', version: 2, run_id: RUN, model_uri: 's3://m/v2', sha256: 'ab', metrics: {}, created_at: '2030-01-01T00:01:00Z' },
          deployment: { id: 'dep-2', model_version_id: 'demo-reverse-v2', run_id: RUN, endpoint: 'http://127.0.0.1:1', status: 'rolled-back', created_at: '2030-01-01T00:02:00Z' },
        }
      : {}),
  };
}

let server: http.Server;
let apiUrl: string;
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'tempered-cli-wait-'));

before(async () => {
  const streams = new Set<http.ServerResponse>();
  server = http.createServer((req, res) => {
    if (req.headers.authorization !== 'Bearer test-token') return void res.writeHead(401).end('{"error":"no token"}');
    if (req.method === 'POST' && req.url === `/api/runs/${RUN}/approval`) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ decision: 'approve', approver: 'approver', decidedAt: '2030-01-01T00:01:00Z' }));
    }
    if (req.url === `/api/runs/${RUN}`) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify(detail('rolled-back')));
    }
    if (req.url === `/api/runs/${RUN}/events`) {
      // As services/api/src/events.ts sends them, with an event split across writes; the stream is never ended.
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('retry: 2000\n\n');
      res.write(`event: snapshot\ndata: ${JSON.stringify(detail('canary'))}\n\n`);
      streams.add(res);
      req.on('close', () => streams.delete(res));
      const { run, stages } = detail('rolled-back');
      const change = `event: run\ndata: ${JSON.stringify({ run, stages })}\n\n`;
      setTimeout(() => res.write(': keepalive\n\n'), 100);
      setTimeout(() => res.write(change.slice(0, 40)), 200);
      setTimeout(() => res.write(change.slice(40)), 300);
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `no route ${req.url}` }));
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  apiUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  process.env.TEMPERED_API_URL = apiUrl;
  process.env.TEMPERED_API_TOKEN = 'test-token';
  process.env.TEMPERED_DATA_DIR = dataDir;
});
after(() => {
  server.closeAllConnections();
  server.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Rejects when `promise` takes longer than `ms`: a hang fails the test instead of stalling it. */
function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not return within ${ms} ms`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

describe('the CLI waits for a run until a final status', () => {
  test('every final status of the platform ends a wait, rolled-back included', () => {
    for (const status of ['deployed', 'rolled-back', 'rejected', 'expired', 'failed', 'cancelled'] as const) {
      assert.ok(reached(status, 'end'), status);
      assert.ok(reached(status, 'gate'), status);
    }
    assert.ok(reached('waiting-approval', 'gate'));
    for (const status of ['queued', 'running', 'waiting-labels', 'waiting-approval', 'canary'] as const) assert.ok(!reached(status, 'end'), status);
  });

  test('waitForRun returns the rolled-back run from its event stream', async () => {
    const seen: RunStatus[] = [];
    const started = Date.now();
    const final = await within(5000, waitForRun(RUN, 'test-token', 'end', (d) => seen.push(d.run.status)), 'waitForRun');
    assert.deepEqual(seen, ['canary', 'rolled-back'], 'the snapshot (a canary), then the change');
    assert.equal(final.run.status, 'rolled-back');
    assert.equal(final.run.error, ERROR);
    assert.equal(final.deployment?.status, 'rolled-back');
    assert.ok(Date.now() - started < 5000);
  });

  test('`tempered approve` on a canary that rolls back ends with exit 1 and says why', { timeout: 60_000 }, async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'services/cli/src/main.ts'), 'approve', RUN, '--comment', 'ok'], {
      cwd: repoRoot,
      env: { ...process.env, TEMPERED_API_URL: apiUrl, TEMPERED_API_TOKEN: 'test-token', TEMPERED_DATA_DIR: dataDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b));
    child.stderr.on('data', (b: Buffer) => (stderr += b));
    const exit = new Promise<number | null>((resolve) => child.once('exit', resolve));
    // Starting node with tsx takes a few seconds on a busy machine; the wait itself well under one.
    const code = await within(30_000, exit, '`tempered approve`').catch((err) => {
      child.kill();
      throw new Error(`${(err as Error).message}; it printed:\n${stdout}${stderr}`);
    });
    assert.equal(code, 1, `exit code; output:\n${stdout}${stderr}`);
    assert.match(stdout, /^approved by approver at 2030-01-01T00:01:00Z$/m);
    assert.match(stdout, new RegExp(`^run ended rolled-back: ${ERROR.replace(/[()]/g, '\\$&')}$`, 'm'));
    assert.match(stdout, /previous version keeps serving/);
    assert.doesNotMatch(stdout, /is serving/, 'a rolled-back model is not announced as serving');
  });
});
