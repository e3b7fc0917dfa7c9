/**
 * Shared by the Node test suites: the test stack's configuration (infra/test.sh exports its data directory
 * and port offset), clients for it, and small helpers. The stack itself is real and already running.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { TrainerServer } from '@tempered/activities';
import { ArtifactStore } from '@tempered/artifacts';
import { childEnv, loadConfig, repoRoot } from '@tempered/config';
import { createDb } from '@tempered/db';
import { parseSpec, type PipelineSpec } from '@tempered/spec';

export const cfg = loadConfig();
export { repoRoot };

export async function temporalClient(): Promise<{ client: Client; close: () => Promise<void> }> {
  const connection = await Connection.connect({ address: cfg.temporal.address });
  return { client: new Client({ connection, namespace: cfg.temporal.namespace }), close: () => connection.close() };
}

let runtimeInstalled = false;
/** Worker logs at WARN and above: the INFO lines of every state change drown the test report. */
export function quietWorkerLogs(): void {
  if (runtimeInstalled) return;
  Runtime.install({ logger: new DefaultLogger('WARN') });
  runtimeInstalled = true;
}

export const db = () => createDb(cfg.databaseUrl, 2);
/**
 * The pre-started trainer of this test process, for suites that call activities in-process (as a worker
 * does): started by the first trainer job, it ends with the process.
 */
export const trainerServer = new TrainerServer(cfg);
export const store = () => new ArtifactStore(cfg.s3);

export function uniqueId(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

export function demoSpec(): PipelineSpec {
  return parseSpec(readFileSync(path.join(repoRoot, 'examples', 'demo', 'pipeline.yaml'), 'utf8'));
}

export type StackUser = 'operator' | 'approver' | 'admin';

/** The stack's first users (role, token, password), written by the API at its first start. */
export function credentialsOf(user: StackUser): { role: string; token: string; password: string } {
  return JSON.parse(readFileSync(path.join(cfg.dataDir, 'credentials.json'), 'utf8'))[user];
}

export function tokenOf(user: StackUser): string {
  return credentialsOf(user).token;
}

/** A request as a stack user (by name), as the holder of a given bearer token (`{token}`), or anonymous. */
export async function apiCall(method: string, route: string, user?: StackUser | { token: string }, body?: unknown) {
  const token = typeof user === 'string' ? tokenOf(user) : user?.token;
  const res = await fetch(`${cfg.api.url}${route}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': typeof body === 'string' ? 'application/yaml' : 'application/json' } : {}),
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
}

export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Waits until the run reaches `status` (its gate: waiting-approval; deployed) and returns its detail; a run that ends otherwise fails the wait. */
export async function runReaching(runId: string, status: 'waiting-approval' | 'deployed', timeoutMs = 10 * 60_000): Promise<any> {
  return waitFor(`${runId} ${status}`, timeoutMs, async () => {
    const d = (await apiCall('GET', `/api/runs/${runId}`, 'operator')).body;
    if (['failed', 'cancelled', 'rejected', 'expired'].includes(d.run.status)) throw new Error(`run ${d.run.status}: ${d.run.error}`);
    return d.run.status === status ? d : undefined;
  }, status === 'deployed' ? 1000 : 2000);
}

/** Starts a run of `spec` through the API, waits for its deployment gate, and has the approver approve it; returns its id. */
export async function approvedRun(spec: PipelineSpec, comment: string): Promise<string> {
  const started = await apiCall('POST', '/api/runs', 'operator', { spec });
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const runId: string = started.body.runId;
  await runReaching(runId, 'waiting-approval');
  const approved = await apiCall('POST', `/api/runs/${runId}/approval`, 'approver', { decision: 'approve', comment });
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  return runId;
}

const execFileAsync = promisify(execFile);

/** The environment of a trainer process started by a test: what the activities give one, on CPU. */
export const trainerEnv = childEnv(cfg, { CUDA_VISIBLE_DEVICES: '' });

/** Runs one trainer command to completion (config written to `dir`) and returns its `finished` event. */
export async function trainerCommand(command: string, config: Record<string, unknown>, dir: string): Promise<any> {
  const file = path.join(dir, `${command}-${randomBytes(4).toString('hex')}.json`);
  writeFileSync(file, JSON.stringify(config));
  const { stdout } = await execFileAsync(cfg.python, ['-m', 'tempered_trainer', command, '--config', file], { env: trainerEnv, maxBuffer: 64 << 20 });
  return JSON.parse(stdout.trim().split('\n').at(-1)!);
}

/** Records of the demo task ("reverse 3 1 2" -> "2 1 3"), `n` of them, as JSON lines with keys. */
export function reversalRecords(n = 300): Array<{ key: string; prompt: string; response: string }> {
  return Array.from({ length: n }, (_, i) => {
    const digits = Array.from({ length: 3 + (i % 4) }, (_, j) => String((i * 7 + j * 3) % 10));
    return { key: `r${i}`, prompt: `reverse ${digits.join(' ')}`, response: [...digits].reverse().join(' ') };
  });
}

/**
 * The tiny model the gateway tests and benchmarks serve: 300 demo records tokenized and trained for 60 steps (a
 * few seconds, milliseconds per request). Returns sft's `finished` event (its checkpoints).
 */
export async function trainTinyModel(dir: string, model = { n_layer: 1, n_head: 2, n_embd: 32, context_length: 32 }): Promise<any> {
  writeFileSync(path.join(dir, 'records.jsonl'), `${reversalRecords().map((r) => JSON.stringify(r)).join('\n')}\n`);
  await trainerCommand('tokenize', { input: path.join(dir, 'records.jsonl'), output_dir: path.join(dir, 'tok'), vocab_size: 300 }, dir);
  return trainerCommand('sft', {
    train_shard: path.join(dir, 'tok', 'encoded.shard'), tokenizer: path.join(dir, 'tok', 'tokenizer.json'), output_dir: path.join(dir, 'sft'),
    model, steps: 60, batch_size: 16, learning_rate: 0.01, warmup_steps: 2, weight_decay: 0, checkpoint_every: 60, seed: 0, device: 'cpu', log_every: 60,
  }, dir);
}

/** A port nothing listens on (bound and released at once). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/**
 * A worker process (services/worker, as a cluster starts one) serving `pools`, in a process group of its own
 * (stop it with `process.kill(-child.pid, …)`); resolves once it polls.
 */
export async function startWorkerProcess(pools: string[], options: { args?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<ChildProcess> {
  const child = spawn(path.join(repoRoot, 'node_modules', '.bin', 'tsx'), [path.join(repoRoot, 'services', 'worker', 'src', 'main.ts'), '--pool', pools.join(','), ...(options.args ?? [])], {
    cwd: repoRoot,
    env: options.env ?? process.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  await waitFor(`a worker for ${pools.join(', ')}`, 120_000, async () => {
    if (child.exitCode !== null) throw new Error(`worker exited: ${output}`);
    return output.includes('worker ready') ? true : undefined;
  });
  return child;
}
