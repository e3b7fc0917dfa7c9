/**
 * The API process: connects to Postgres (migrating it) and Temporal, creates the first credentials if there
 * are none, and serves HTTP on TEMPERED_API_PORT.
 */
import { Client, Connection } from '@temporalio/client';
import { describe, loadConfig } from '@tempered/config';
import { createDb, migrateToLatest } from '@tempered/db';
import { credentialsPath, ensureTokens } from './auth';
import { createServer } from './server';

async function main(): Promise<void> {
  const cfg = loadConfig();
  const db = createDb(cfg.databaseUrl);
  await migrateToLatest(db);
  const created = await ensureTokens(cfg.dataDir);
  if (created) console.log(`created API users ${Object.keys(created).join(', ')}; their tokens are in ${credentialsPath(cfg.dataDir)} (mode 600)`);
  const connection = await Connection.connect({ address: cfg.temporal.address });
  const temporal = new Client({ connection, namespace: cfg.temporal.namespace });
  const server = createServer({ cfg, db, temporal });
  server.listen(cfg.api.port, '127.0.0.1', () => console.log(`api listening on ${cfg.api.url}; ${JSON.stringify(describe(cfg))}`));
  const stop = () => server.close(() => void Promise.all([db.destroy(), connection.close()]).then(() => process.exit(0)));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(`api failed: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
