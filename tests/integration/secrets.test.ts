/**
 * Secrets and credentials of the running test stack, read as another local user (or a model's code) would
 * look for them: in its logs, in file modes, on command lines (/proc/<pid>/cmdline is readable by anyone),
 * in each process's environment, and as the fixed defaults older versions accepted. Then the configuration's
 * side in-process: where credentials come from, and which variables each process of the stack may inherit.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { ArtifactStore } from '@tempered/artifacts';
import { CHILD_ENV_ALLOWED, childEnv, defaultPorts, ensureSecrets, loadConfig, readSecrets, secretsPath, type StackProcess, stackEnv, stackEnvAllows } from '@tempered/config';
import { createDb, sql } from '@tempered/db';
import { cfg, freePort, repoRoot } from '../support';

/** Every secret of the stack: the generated ones and the first users' passwords and tokens. */
function stackSecrets(): string[] {
  const generated = Object.values(JSON.parse(readFileSync(secretsPath(cfg.dataDir), 'utf8')) as Record<string, string>);
  const users = Object.values(JSON.parse(readFileSync(path.join(cfg.dataDir, 'credentials.json'), 'utf8')) as Record<string, { password: string; token: string }>);
  const all = [...generated, ...users.flatMap((u) => [u.password, u.token])];
  assert.equal(all.length, 3 + 3 * 2);
  for (const s of all) assert.ok(typeof s === 'string' && s.length >= 16, 'every secret is long enough to be searched for');
  return all;
}

const mode = (p: string) => statSync(p).mode & 0o777;
const octal = (m: number) => `0${m.toString(8)}`;

/** The processes of a part of the stack: its pid file names the leader of its own process group. */
function processesOf(part: StackProcess): number[] {
  const leader = Number(readFileSync(path.join(cfg.dataDir, 'run', `${part}.pid`), 'utf8'));
  const pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]) === leader; // field 5: the process group
    } catch {
      return false; // gone meanwhile
    }
  });
  assert.ok(pids.includes(leader), `${part} (pid ${leader}) is running`);
  return pids;
}

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
const environ = (pid: number) =>
  Object.fromEntries(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const exe = (pid: number) => path.basename(readlinkSync(`/proc/${pid}/exe`));
const isNode = (pid: number) => exe(pid).startsWith('node');
const isPython = (pid: number) => exe(pid).startsWith('python');

/** 'accepted', or the error code PostgreSQL answers a sign-in as its superuser with (28P01: wrong password). */
async function signIn(databaseUrl: string, password: string): Promise<string | undefined> {
  const url = new URL(databaseUrl);
  url.password = password;
  const db = createDb(url.toString(), 1);
  try {
    await sql`select 1`.execute(db);
    return 'accepted';
  } catch (err) {
    return (err as { code?: string }).code;
  } finally {
    await db.destroy();
  }
}

/**
 * Every variable `childEnv` itself may set, the optional ones included (a thread count, a GPU choice): a model
 * server may have been started by another suite's in-process activities, with settings of its own.
 */
const childSets = childEnv({ ...cfg, trainer: { ...cfg.trainer, threads: 1 } }, { CUDA_VISIBLE_DEVICES: '' });

const PARTS: StackProcess[] = ['temporal', 'postgres', 's3', 'worker', 'api', 'gateway'];

describe('the running stack keeps its secrets', () => {
  test('no log holds a password, token or generated secret', () => {
    const secrets = stackSecrets();
    const logs = path.join(cfg.dataDir, 'logs');
    const files = readdirSync(logs, { recursive: true, encoding: 'utf8' }).map((f) => path.join(logs, f)).filter((f) => statSync(f).isFile());
    assert.ok(files.includes(path.join(logs, 'api.log')), 'the API has written its log');
    assert.match(readFileSync(path.join(logs, 'api.log'), 'utf8'), /passwords and tokens are in .*credentials\.json \(mode 600\)/);
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      secrets.forEach((s, i) => assert.ok(!text.includes(s), `secret #${i} appears in ${file}`));
    }
  });

  test("the data directory, its logs, pid files, secrets and PostgreSQL's folder are the owner's alone", () => {
    const root = process.getuid?.() === 0;
    // As root the server runs as `postgres`, whose group may only pass through the data directory to pg/.
    assert.equal(octal(mode(cfg.dataDir)), octal(root ? 0o710 : 0o700), cfg.dataDir);
    for (const dir of ['logs', 'run', 'pg']) assert.equal(octal(mode(path.join(cfg.dataDir, dir))), '0700', dir);
    for (const dir of ['logs', 'run']) {
      const files = readdirSync(path.join(cfg.dataDir, dir));
      assert.ok(files.length >= 6, `${dir} has a file per part`);
      for (const f of files) assert.equal(octal(mode(path.join(cfg.dataDir, dir, f))), '0600', `${dir}/${f}`);
    }
    for (const f of ['secrets.json', 'credentials.json']) assert.equal(octal(mode(path.join(cfg.dataDir, f))), '0600', f);
    // What the parts write inside is theirs alone too (they start with umask 077).
    for (const dir of ['s3', 'temporal']) assert.equal(octal(mode(path.join(cfg.dataDir, dir)) & 0o077), '00', dir);
    if (root) {
      const pg = statSync(path.join(cfg.dataDir, 'pg'));
      assert.equal(statSync(cfg.dataDir).gid, pg.gid, "the data directory's group is the PostgreSQL server's");
      assert.notEqual(pg.uid, 0, "pg/ belongs to the server's user, not root");
    }
  });

  test('no command line of any process of the stack holds a secret (versitygw and postgres included)', () => {
    const secrets = stackSecrets();
    const seen: string[] = [];
    for (const part of PARTS) {
      for (const pid of processesOf(part)) {
        const line = cmdline(pid);
        seen.push(line);
        secrets.forEach((s, i) => assert.ok(!line.includes(s), `secret #${i} on the command line of ${part} (pid ${pid}): ${line.slice(0, 80)}`));
        assert.doesNotMatch(line, /--access|--secret/, `${part}: ${line.slice(0, 80)}`);
      }
    }
    assert.ok(seen.some((l) => l.includes('versitygw')), 'versitygw was checked');
    assert.ok(seen.some((l) => /\/bin\/postgres -D/.test(l)), 'the postgres server was checked');
  });

  test('each process holds only its allow-listed variables, and only S3 holds a secret: its own keys', () => {
    const secrets = stackSecrets();
    const s3Keys = [cfg.s3.accessKeyId, cfg.s3.secretAccessKey];
    for (const part of PARTS) {
      for (const pid of processesOf(part)) {
        const env = environ(pid);
        for (const [name, value] of Object.entries(env)) {
          const own = part === 's3' && ['ROOT_ACCESS_KEY_ID', 'ROOT_SECRET_ACCESS_KEY'].includes(name);
          if (!own) secrets.forEach((s, i) => assert.ok(!value.includes(s), `secret #${i} in ${name} of ${part} (pid ${pid})`));
          // The Node processes of the stack's own code, not the tools they start (esbuild, postgres, trainers).
          if (isNode(pid) && part !== 's3') assert.ok(stackEnvAllows(part, name), `${part} (pid ${pid}) was given ${name}`);
          // A trainer the worker keeps warm (after a first training): what `childEnv` gives, nothing more.
          if (isPython(pid)) assert.ok(name in childSets || (CHILD_ENV_ALLOWED as readonly string[]).includes(name), `${part}'s trainer (pid ${pid}) was given ${name}`);
        }
        if (part === 's3') assert.deepEqual([env.ROOT_ACCESS_KEY_ID, env.ROOT_SECRET_ACCESS_KEY], s3Keys);
        if (part === 'temporal' || part === 's3') {
          assert.deepEqual(Object.keys(env).filter((k) => /^(TEMPERED|TEMPORAL|S3|AWS)_|^DATABASE_URL$/.test(k)), [], `${part} has no Tempered setting`);
        }
      }
    }
    // Model servers the worker started (one pid file each, once a run is deployed): what `childEnv` gives.
    const servers = readdirSync(path.join(cfg.dataDir, 'run')).filter((f) => f.startsWith('model-server-'));
    for (const f of servers) {
      const pid = Number(readFileSync(path.join(cfg.dataDir, 'run', f), 'utf8'));
      let env: Record<string, string>;
      try {
        env = environ(pid);
      } catch {
        continue; // stopped meanwhile
      }
      for (const [name, value] of Object.entries(env)) {
        assert.ok(name in childSets || (CHILD_ENV_ALLOWED as readonly string[]).includes(name), `model server ${f} was given ${name}`);
        secrets.forEach((s, i) => assert.ok(!value.includes(s), `secret #${i} in ${name} of model server ${f}`));
      }
    }
    const api = environ(processesOf('api').find(isNode)!);
    assert.equal(api.TEMPERED_DATA_DIR, cfg.dataDir, "the API's settings reach it");
    for (const name of ['AWS_SECRET_ACCESS_KEY', 'DATABASE_URL']) assert.equal(api[name], undefined, name);
  });

  test("the old defaults are refused: PostgreSQL's `tempered`, S3's `tempered`/`tempered-secret`", async () => {
    assert.equal(await signIn(cfg.databaseUrl, 'tempered'), '28P01', 'invalid_password');
    assert.equal(await signIn(cfg.databaseUrl, readSecrets(cfg.dataDir)!.postgresPassword!), 'accepted');

    // A write, not a HEAD: versitygw answers an unknown key's HEAD with a bodiless 404, which reads as "no such object".
    const put = (keys: Partial<typeof cfg.s3>) => new ArtifactStore({ ...cfg.s3, ...keys }).putBytes('probe', 'dataset', 'secrets-probe.txt');
    await assert.rejects(put({ accessKeyId: 'tempered', secretAccessKey: 'tempered-secret' }), /No user exists with the provided access key ID/);
    await assert.rejects(put({ secretAccessKey: 'tempered-secret' }), (err: Error) => err.name === 'SignatureDoesNotMatch');
    assert.match((await put({})).uri, /^s3:\/\//, 'the generated keys are accepted');
  });
});

describe('where credentials come from', () => {
  const made: string[] = [];
  const dataDir = () => (made.push(mkdtempSync(path.join(tmpdir(), 'tempered-secrets-'))), made.at(-1)!);
  after(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

  test('a first start generates each secret once, mode 600; a later one keeps them and adds a missing field', () => {
    const dir = dataDir();
    const first = ensureSecrets(dir);
    assert.deepEqual(first.generated, ['postgresPassword', 's3AccessKeyId', 's3SecretAccessKey']);
    assert.equal(octal(mode(secretsPath(dir))), '0600');
    assert.deepEqual(ensureSecrets(dir), { secrets: first.secrets, generated: [] });
    assert.notEqual(ensureSecrets(dataDir()).secrets.postgresPassword, first.secrets.postgresPassword, 'random, not a default');
    const { s3SecretAccessKey: _, ...older } = first.secrets;
    writeFileSync(secretsPath(dir), JSON.stringify(older), { mode: 0o644 });
    const again = ensureSecrets(dir);
    assert.deepEqual(again.generated, ['s3SecretAccessKey']);
    assert.equal(again.secrets.postgresPassword, first.secrets.postgresPassword);
    assert.equal(octal(mode(secretsPath(dir))), '0600');
  });

  test("the embedded parts' credentials are the generated ones; none is a default", () => {
    const dir = dataDir();
    const before = loadConfig({ TEMPERED_DATA_DIR: dir });
    assert.equal(new URL(before.databaseUrl).password, '', 'no password before the first start');
    assert.deepEqual([before.s3.accessKeyId, before.s3.secretAccessKey], ['', '']);
    const { secrets } = ensureSecrets(dir);
    const c = loadConfig({ TEMPERED_DATA_DIR: dir });
    assert.equal(decodeURIComponent(new URL(c.databaseUrl).password), secrets.postgresPassword);
    assert.deepEqual([c.s3.accessKeyId, c.s3.secretAccessKey], [secrets.s3AccessKeyId, secrets.s3SecretAccessKey]);
  });

  test('DATABASE_URL and the S3 settings given from outside win over the file', () => {
    const dir = dataDir();
    ensureSecrets(dir);
    const c = loadConfig({ TEMPERED_DATA_DIR: dir, DATABASE_URL: 'postgres://u:pw@db/x', S3_ENDPOINT: 'https://s3.example', AWS_ACCESS_KEY_ID: 'AKID', AWS_SECRET_ACCESS_KEY: 'SECRET' });
    assert.equal(c.databaseUrl, 'postgres://u:pw@db/x');
    assert.deepEqual([c.s3.endpoint, c.s3.accessKeyId, c.s3.secretAccessKey], ['https://s3.example', 'AKID', 'SECRET']);
    assert.deepEqual(c.external, { temporal: false, postgres: true, s3: true });
  });

  test('a secrets file that is not a JSON object is an error naming the file, not a fresh start', () => {
    const dir = dataDir();
    writeFileSync(secretsPath(dir), 'not json');
    assert.throws(() => loadConfig({ TEMPERED_DATA_DIR: dir }), new RegExp(`${secretsPath(dir).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not a JSON object`));
    assert.throws(() => ensureSecrets(dir), /is not a JSON object/);
  });

  test('each process of the stack inherits only what it needs', () => {
    const parent = {
      PATH: '/usr/bin', HOME: '/root', npm_config_cache: '/x', SSH_AUTH_SOCK: '/tmp/agent', NODE_OPTIONS: '--max-old-space-size=4096',
      TEMPERED_DATA_DIR: '/d', TEMPERED_PORT_OFFSET: '7', TEMPORAL_ADDRESS: 't:7233', S3_ENDPOINT: 'https://s3.example',
      DATABASE_URL: 'postgres://u:pw@db/x', AWS_ACCESS_KEY_ID: 'AKID', AWS_SECRET_ACCESS_KEY: 'SECRET',
      TEMPERED_API_TOKEN: 'api-token', TEMPERED_GATEWAY_KEY: 'gw-key',
    };
    const c = loadConfig(parent);
    const names = (p: StackProcess) => Object.keys(stackEnv(c, p)).sort();
    const settings = ['NODE_OPTIONS', 'S3_ENDPOINT', 'TEMPERED_DATA_DIR', 'TEMPERED_PORT_OFFSET', 'TEMPORAL_ADDRESS'];
    const sorted = (...n: string[]) => [...n].sort();
    assert.deepEqual(names('temporal'), ['HOME', 'PATH']);
    assert.deepEqual(Object.keys(stackEnv(c, 's3', { ROOT_ACCESS_KEY_ID: 'k' })).sort(), ['HOME', 'PATH', 'ROOT_ACCESS_KEY_ID']);
    assert.deepEqual(names('postgres'), sorted('HOME', 'PATH', ...settings));
    assert.deepEqual(names('worker'), sorted('HOME', 'PATH', ...settings, 'DATABASE_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'));
    assert.deepEqual(names('api'), sorted('HOME', 'PATH', ...settings, 'DATABASE_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'TEMPERED_API_TOKEN', 'TEMPERED_GATEWAY_KEY'));
    assert.deepEqual(names('gateway'), sorted('HOME', 'PATH', ...settings, 'DATABASE_URL', 'TEMPERED_GATEWAY_KEY'));
  });
});

describe('a data directory of an older version', () => {
  const tsx = path.join(repoRoot, 'node_modules', '.bin', 'tsx');

  /** The stack's PostgreSQL host on its own data directory and port; resolves once it is ready. */
  function startHost(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; output: () => string }> {
    const child = spawn(tsx, [path.join(repoRoot, 'infra', 'src', 'postgres-host.ts')], { cwd: repoRoot, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    return new Promise((resolve, reject) => {
      const take = (chunk: Buffer) => {
        out += chunk;
        if (out.includes('postgres ready')) resolve({ child, output: () => out });
      };
      child.stdout!.on('data', take);
      child.stderr!.on('data', take);
      child.once('exit', (code) => reject(new Error(`postgres host exited (${code}):\n${out}`)));
    });
  }

  async function stopHost(host: { child: ChildProcess }): Promise<void> {
    const exited = new Promise((r) => host.child.once('exit', r));
    process.kill(-host.child.pid!, 'SIGTERM');
    await exited;
  }

  test('keeps working: its superuser moves off the old default, its api.log loses the admin password, its modes tighten', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tempered-older-'));
    const port = await freePort();
    const env = { ...process.env, TEMPERED_DATA_DIR: dir, TEMPERED_PORT_OFFSET: String(port - defaultPorts.postgres) };
    const url = `postgres://postgres@127.0.0.1:${port}/tempered`;
    try {
      // What an older version left: a cluster initialised with the old default, no secrets.json, and an
      // api.log (0644, in a 0755 folder) with the first admin's password.
      chmodSync(dir, 0o755);
      writeFileSync(secretsPath(dir), JSON.stringify({ postgresPassword: 'tempered' }));
      await stopHost(await startHost(env));
      rmSync(secretsPath(dir));
      mkdirSync(path.join(dir, 'logs'), { mode: 0o755 });
      const apiLog = path.join(dir, 'logs', 'api.log');
      writeFileSync(apiLog, 'created users admin, operator, approver\nfirst admin: username admin, password Old-Admin-Pw-123\napi listening\n', { mode: 0o644 });

      // What `stack up` does before starting anything, then PostgreSQL's start.
      await promisify(execFile)(tsx, ['-e', "require('./infra/src/stack').prepare()"], { cwd: repoRoot, env });
      const log = readFileSync(apiLog, 'utf8');
      assert.ok(!log.includes('Old-Admin-Pw-123'), log);
      assert.match(log, /^first admin: username admin, password \[removed: it is in credentials\.json\]$/m);
      assert.equal(octal(mode(apiLog)), '0600');
      assert.equal(octal(mode(dir)), octal(process.getuid?.() === 0 ? 0o710 : 0o700));
      const host = await startHost(env);
      try {
        assert.match(host.output(), /the superuser had the old default password; it now has the generated one/);
        assert.equal(await signIn(url, 'tempered'), '28P01', 'the old default is refused from now on');
        assert.equal(await signIn(url, readSecrets(dir)!.postgresPassword!), 'accepted');
      } finally {
        await stopHost(host);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
