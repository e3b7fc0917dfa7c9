/**
 * Model servers: starting and stopping the Python server of one deployment (an OpenAI-compatible server on a
 * port of its own: the trainer's `tempered_trainer serve`, or with `deploy.engine: llamacpp` llama.cpp's
 * `llama_cpp.server` on the version's stored GGUF file), and the supervisor that keeps what the deployments table says
 * serves actually serving. The deploy activity starts a server through `startModelServer`; the supervisor, run
 * by the worker (services/worker), starts again every `serving` or `canary` deployment whose server is not
 * running (after `npm stop` and `npm start`, or a crash), on its recorded endpoint, with a backoff per
 * deployment, and stops a server whose deployment no longer serves (a rollback made through the API).
 * A canary's server is left to its canary: its dying is what the canary's health check is there to see, and
 * the rollback it causes is the answer (the previous version, `serving`, is kept up here).
 */
import { spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { childEnv } from '@tempered/config';
import { listRoutes, setRoutes } from '@tempered/db';
import { DEFAULT_GGUF_TYPE, type GgufType, type PipelineSpec, type ServingEngine } from '@tempered/spec';
import type { Deps as ActivityDeps } from './context';
import { localModelTar, storedGgufs } from './gguf';

/** What starting and stopping model servers needs of an activity's dependencies. */
type Deps = Pick<ActivityDeps, 'cfg' | 'db' | 'store'>;

/** Deployment statuses whose model server runs (and holds its port). */
export const LIVE_STATUSES = ['serving', 'canary'] as const;

const serverName = (deploymentId: string) => `model-server-${deploymentId}`;
/** In the run folder, so `npm stop` ends every model server with the rest of the stack. */
const pidFile = (deps: Deps, deploymentId: string) => path.join(deps.cfg.dataDir, 'run', `${serverName(deploymentId)}.pid`);
export const serverLog = (deps: Deps, deploymentId: string) => path.join(deps.cfg.dataDir, 'logs', `${serverName(deploymentId)}.log`);

export function stopProcessGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGTERM');
  } catch {
    /* not running */
  }
}

/**
 * True when `pid` runs a model server. The command line is checked too: after a reboot the recorded pid may
 * belong to some other process, which must neither count as serving nor be stopped.
 */
export function isModelServer(pid: number | null | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return (cmdline.includes('tempered_trainer') && cmdline.includes('serve')) || cmdline.includes('llama_cpp.server');
  } catch {
    return true; // no /proc (macOS): the pid is alive, which is all that can be known
  }
}

function readPidFile(file: string): number | undefined {
  try {
    return Number(readFileSync(file, 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

/** Stops a deployment's model server and records why (`stopped` when replaced, `rolled-back` by a rollback). */
export async function stopDeployment(deps: Deps, deploymentId: string, status: 'stopped' | 'rolled-back'): Promise<void> {
  // The status first: the supervisor must not see a live deployment whose server just died, and start it again.
  await deps.db.updateTable('deployments').set({ status }).where('id', '=', deploymentId).execute();
  await stopServer(deps, deploymentId);
}

/** Stops a deployment's model server, its status left as it is. */
export async function stopServer(deps: Deps, deploymentId: string): Promise<void> {
  // The pid goes too: once that process is gone, the number may be handed to another deployment's server.
  const row = await deps.db.selectFrom('deployments').select('pid').where('id', '=', deploymentId).executeTakeFirst();
  await deps.db.updateTable('deployments').set({ pid: null }).where('id', '=', deploymentId).execute();
  if (row?.pid && isModelServer(row.pid)) stopProcessGroup(row.pid);
  await rm(pidFile(deps, deploymentId), { force: true });
}

export function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

/** How long a restart waits for a dead server's port to be released before it takes another one. */
const PORT_RELEASE_MS = 5000;

/** Resolves once nothing listens on `port`, or after `ms`. */
async function portReleased(port: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while ((await portInUse(port)) && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
}

/** Ports that live deployments (other than `except`) hold. */
async function heldPorts(deps: Deps, except?: string): Promise<Set<number>> {
  let q = deps.db.selectFrom('deployments').select('endpoint').where('status', 'in', LIVE_STATUSES);
  if (except) q = q.where('id', '!=', except);
  return new Set((await q.execute()).map((d) => Number(new URL(d.endpoint).port)));
}

/** The first port from the stack's model port up that no live deployment (but `except`) holds and nothing listens on. */
export async function freeModelPort(deps: Deps, except?: string): Promise<number> {
  const taken = await heldPorts(deps, except);
  for (let port = deps.cfg.ports.model; port < deps.cfg.ports.model + 50; port++) {
    if (!taken.has(port) && !(await portInUse(port))) return port;
  }
  throw new Error(`no free model-server port in ${deps.cfg.ports.model}–${deps.cfg.ports.model + 49}; stop old deployments`);
}

async function waitHealthy(endpoint: string, health: string, timeoutMs: number, isAlive: () => boolean, logFile: string, heartbeat?: () => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    heartbeat?.();
    if (!isAlive()) throw new Error(`the model server exited during start-up; see ${logFile}`);
    try {
      if ((await fetch(`${endpoint}${health}`)).ok) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`the model server did not answer ${endpoint}${health} within ${timeoutMs / 1000}s`);
}

/** Which server a deployment runs: the trainer's own, or llama.cpp's on one GGUF type of the version. */
export type Serving = { engine: 'tempered' } | { engine: 'llamacpp'; quantization: GgufType };

/** What a spec's `deploy` section asks to serve with. */
export function servingOf(deploy: Pick<PipelineSpec['deploy'], 'engine' | 'quantization'> | undefined): Serving {
  const engine: ServingEngine = deploy?.engine ?? 'tempered';
  return engine === 'llamacpp' ? { engine, quantization: deploy?.quantization ?? DEFAULT_GGUF_TYPE } : { engine: 'tempered' };
}

export interface ModelServerInput {
  deploymentId: string;
  modelVersionId: string;
  /** The version's model.tar in S3 (model_versions.model_uri and sha256), downloaded once into the data directory. */
  model: { uri: string; sha256: string };
  port: number;
  /** Default the trainer's server. With llamacpp the version's GGUF file of that type must be stored (./gguf.ts). */
  serving?: Serving;
  /** Called while waiting for the server to answer (an activity's heartbeat). */
  heartbeat?: () => void;
}

/** The command line of a deployment's server: its program's arguments and the URL path that says it is up. */
async function serverCommand(deps: Deps, input: ModelServerInput, modelDir: string): Promise<{ args: string[]; health: string }> {
  const serving = input.serving ?? { engine: 'tempered' };
  if (serving.engine === 'tempered') {
    const modelTar = await localModelTar(deps, input.modelVersionId, input.model);
    const configPath = path.join(modelDir, 'serve.json');
    await writeFile(configPath, JSON.stringify({ model: modelTar, host: '127.0.0.1', port: input.port, model_name: input.modelVersionId, device: 'auto' }));
    return { args: ['-m', 'tempered_trainer', 'serve', '--config', configPath], health: '/health' };
  }
  const file = (await storedGgufs(deps.db, input.modelVersionId))[serving.quantization];
  if (!file) throw new Error(`${input.modelVersionId} has no stored ${serving.quantization} GGUF file to serve; deploying it with engine llamacpp exports one`);
  const gguf = path.join(modelDir, `model-${serving.quantization}.gguf`);
  if (!existsSync(gguf)) {
    await deps.store.download(file, `${gguf}.part`);
    await rename(`${gguf}.part`, gguf);
  }
  // The GGUF's own chat template (what the model was trained with), never a format llama-cpp-python guesses from it;
  // the context the model was trained with (n_ctx 0). The model is named by its version, as the trainer's server names it.
  const args = ['-m', 'llama_cpp.server', '--model', gguf, '--model_alias', input.modelVersionId, '--host', '127.0.0.1', '--port', String(input.port),
    '--chat_format', 'chat_template.default', '--n_ctx', '0'];
  return { args, health: '/v1/models' };
}

/**
 * Starts the model server of one deployment, detached (it outlives the worker; `npm stop` ends it through its
 * pid file), and resolves once it answers `/health`. Throws, with the server stopped, if it exits or stays
 * silent for two minutes.
 */
export async function startModelServer(deps: Deps, input: ModelServerInput): Promise<{ pid: number; endpoint: string }> {
  const endpoint = `http://127.0.0.1:${input.port}`;
  const modelDir = path.join(deps.cfg.dataDir, 'models', input.modelVersionId);
  await mkdir(modelDir, { recursive: true });
  // Its model file is downloaded (and its digest checked) once per version, then renamed into place: a restart finds it whole.
  const { args, health } = await serverCommand(deps, input, modelDir);
  await mkdir(path.join(deps.cfg.dataDir, 'logs'), { recursive: true, mode: 0o700 });
  await mkdir(path.join(deps.cfg.dataDir, 'run'), { recursive: true });
  const logFile = serverLog(deps, input.deploymentId);
  // One server per deployment. A server its pid file names that is still alive was started by a worker killed
  // before it could record the pid in the database (so the supervisor saw none running): stop it, or it would
  // hold its port for good once this start overwrites the pid file, and outlive `npm stop`.
  const unrecorded = readPidFile(pidFile(deps, input.deploymentId));
  if (isModelServer(unrecorded)) stopProcessGroup(unrecorded!);
  const server = spawn(deps.cfg.python, args, {
    detached: true,
    // Owner-only, whatever the umask of the process that deploys (a worker the stack started has 077; not every one).
    stdio: ['ignore', openSync(logFile, 'a', 0o600), openSync(logFile, 'a', 0o600)],
    env: childEnv(deps.cfg),
  });
  server.unref();
  await writeFile(pidFile(deps, input.deploymentId), String(server.pid), { mode: 0o600 });
  try {
    await waitHealthy(endpoint, health, 120_000, () => server.exitCode === null && server.signalCode === null, logFile, input.heartbeat);
  } catch (err) {
    stopProcessGroup(server.pid!);
    throw err;
  }
  return { pid: server.pid!, endpoint };
}

/** Points the routes of a version at its server's new endpoint, the weights unchanged. */
async function moveRoutes(deps: Deps, modelVersionId: string, endpoint: string): Promise<void> {
  const version = await deps.db.selectFrom('model_versions').select('name').where('id', '=', modelVersionId).executeTakeFirstOrThrow();
  const routes = await listRoutes(deps.db, version.name);
  if (!routes.some((r) => r.modelVersionId === modelVersionId)) return;
  await setRoutes(deps.db, version.name, routes.map((r) => ({ ...r, endpoint: r.modelVersionId === modelVersionId ? endpoint : r.endpoint })));
}

export interface SupervisorOptions {
  /** How often the deployments are checked (ms). */
  everyMs?: number;
  /** The wait after a failed start, doubled per failure up to `maxBackoffMs`. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  log?: (message: string) => void;
}

/**
 * Keeps every live deployment's model server running. One per machine whose workers start model servers (the
 * stack runs one worker); a start it makes is checked against the deployments table again before it counts, so
 * a deployment stopped meanwhile leaves no server behind.
 */
export class ModelServerSupervisor {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private closed = false;
  /** Per deployment: failed starts in a row and when the next may be tried. */
  private readonly backoff = new Map<string, { failures: number; notBefore: number }>();
  private readonly opts: Required<SupervisorOptions>;

  constructor(private readonly deps: Deps, opts: SupervisorOptions = {}) {
    this.opts = { everyMs: 2000, initialBackoffMs: 2000, maxBackoffMs: 60_000, log: (m) => console.log(m), ...opts };
  }

  /** Checks now (bringing back what `npm stop` ended), then every `everyMs`. */
  start(): this {
    const tick = () => {
      this.running = this.check()
        .catch((err) => this.opts.log(`model-server supervisor: check failed: ${(err as Error).message}`))
        .finally(() => {
          if (!this.closed) this.timer = setTimeout(tick, this.opts.everyMs);
        });
    };
    tick();
    return this;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One pass: start the live deployments' missing servers, stop the servers of deployments that no longer serve. */
  async check(): Promise<void> {
    const rows = await this.deps.db
      .selectFrom('deployments')
      .innerJoin('model_versions', 'model_versions.id', 'deployments.model_version_id')
      .leftJoin('runs', 'runs.id', 'deployments.run_id')
      .select(['deployments.id', 'deployments.status', 'deployments.pid', 'deployments.endpoint', 'deployments.model_version_id', 'model_versions.model_uri', 'model_versions.sha256', 'runs.spec'])
      .where((eb) => eb.or([eb('deployments.status', '=', 'serving'), eb('deployments.pid', 'is not', null)]))
      .execute();
    // A pid recorded by an older version, which kept the pids of stopped deployments, may be a live server's now.
    const livePids = new Set(rows.filter((r) => r.status === 'serving' || r.status === 'canary').map((r) => r.pid));
    for (const row of rows) {
      if (this.closed) return;
      if (row.status === 'canary') continue;
      const live = row.status === 'serving';
      const running = isModelServer(row.pid);
      if (!live && livePids.has(row.pid)) {
        await this.deps.db.updateTable('deployments').set({ pid: null }).where('id', '=', row.id).execute();
      } else if (!live && running) {
        this.opts.log(`model-server supervisor: ${row.id} is ${row.status}; stopping its server (pid ${row.pid})`);
        await stopServer(this.deps, row.id);
      } else if (live && !running) {
        await this.restart(row);
      } else if (live) {
        this.backoff.delete(row.id);
      }
    }
  }

  private async restart(row: { id: string; pid: number | null; endpoint: string; model_version_id: string; model_uri: string; sha256: string; spec: unknown }): Promise<void> {
    const b = this.backoff.get(row.id) ?? { failures: 0, notBefore: 0 };
    if (Date.now() < b.notBefore) return;
    const t0 = Date.now();
    this.opts.log(
      `model-server supervisor: ${row.id} (${row.model_version_id}) should serve at ${row.endpoint} but its server${row.pid ? ` (pid ${row.pid})` : ''} is not running; starting it${b.failures ? ` (attempt ${b.failures + 1})` : ''}`,
    );
    try {
      // Its own port, where the gateway's routes point, unless another deployment took it while this one was
      // stopped (a rollback to an old version) or something else listens there: then a free one, and the
      // routes follow.
      let port = Number(new URL(row.endpoint).port);
      const taken = (await heldPorts(this.deps, row.id)).has(port);
      // A server killed a moment ago may still hold its socket: the kernel releases a dying process's memory
      // (so its /proc cmdline reads empty and it no longer counts as a model server) before its files.
      if (!taken) await portReleased(port, PORT_RELEASE_MS);
      if (taken || (await portInUse(port))) port = await freeModelPort(this.deps, row.id);
      // The server the deployment was made with: its run's spec says (a spec from before deploy.engine: the trainer's).
      const serving = servingOf((row.spec as Partial<PipelineSpec> | null)?.deploy);
      const { pid, endpoint } = await startModelServer(this.deps, { deploymentId: row.id, modelVersionId: row.model_version_id, model: { uri: row.model_uri, sha256: row.sha256 }, port, serving });
      const still = await this.deps.db
        .updateTable('deployments')
        .set({ pid, endpoint })
        .where('id', '=', row.id)
        .where('status', '=', 'serving')
        .returning('id')
        .executeTakeFirst();
      if (!still) {
        stopProcessGroup(pid);
        this.opts.log(`model-server supervisor: ${row.id} stopped serving while its server started; stopped it again`);
        return;
      }
      if (endpoint !== row.endpoint) await moveRoutes(this.deps, row.model_version_id, endpoint);
      this.backoff.delete(row.id);
      this.opts.log(`model-server supervisor: ${row.id} serves again at ${endpoint} (pid ${pid}, ${((Date.now() - t0) / 1000).toFixed(1)}s)`);
    } catch (err) {
      const failures = b.failures + 1;
      const wait = Math.min(this.opts.maxBackoffMs, this.opts.initialBackoffMs * 2 ** (failures - 1));
      this.backoff.set(row.id, { failures, notBefore: Date.now() + wait });
      this.opts.log(`model-server supervisor: starting ${row.id} failed (${failures} in a row): ${(err as Error).message}; next try in ${(wait / 1000).toFixed(0)}s`);
    }
  }
}
