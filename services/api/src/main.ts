/**
 * The API process: connects to Postgres (migrating it) and Temporal, creates the first users if there are
 * none, listens for changes to stream to dashboards, and serves HTTP on TEMPERED_API_PORT.
 */
import { Client, Connection } from '@temporalio/client';
import { ArtifactStore } from '@tempered/artifacts';
import { describe, loadConfig } from '@tempered/config';
import { createDb, migrateToLatest } from '@tempered/db';
import { Authenticator, credentialsPath, ensureFirstUsers } from './auth';
import { EventHub } from './events';
import { buildServer } from './server';

async function main(): Promise<void> {
  const cfg = loadConfig();
  const db = createDb(cfg.databaseUrl, 10);
  await migrateToLatest(db);
  const created = await ensureFirstUsers(db, cfg.dataDir);
  if (created) {
    // Where the passwords are, never the passwords: this goes to logs/api.log. infra/up.sh shows them once on
    // the terminal of whoever started the stack.
    console.log(`created users ${Object.keys(created).join(', ')}; their passwords and tokens are in ${credentialsPath(cfg.dataDir)} (mode 600)`);
  }
  const connection = await Connection.connect({ address: cfg.temporal.address });
  const temporal = new Client({ connection, namespace: cfg.temporal.namespace });
  const hub = new EventHub({ db, temporal }, cfg.databaseUrl);
  await hub.start();
  const app = await buildServer({ cfg, db, temporal, store: new ArtifactStore(cfg.s3), auth: new Authenticator(db, cfg.api.token), hub });
  await app.listen({ port: cfg.api.port, host: '127.0.0.1' });
  console.log(`api listening on ${cfg.api.url}; dashboard at ${cfg.api.url}/; ${JSON.stringify(describe(cfg))}`);
  const stop = () => {
    void hub.stop();
    app.server.closeAllConnections();
    void app.close().then(() => Promise.all([db.destroy(), connection.close()])).then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(`api failed: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
