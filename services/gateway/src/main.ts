/**
 * The gateway process: connects to Postgres (migrating it), loads the routes, and serves HTTP on
 * TEMPERED_GATEWAY_PORT (8070 + TEMPERED_PORT_OFFSET). SIGTERM stops accepting requests, lets those under way
 * finish and writes the request records still waiting.
 */
import { loadConfig } from '@tempered/config';
import { createDb, migrateToLatest } from '@tempered/db';
import { createGateway } from './app';

async function main(): Promise<void> {
  const cfg = loadConfig();
  const db = createDb(cfg.databaseUrl, 8);
  await migrateToLatest(db);
  const gateway = createGateway({ cfg, db });
  await gateway.start();
  try {
    await gateway.app.listen({ port: cfg.gateway.port, host: '127.0.0.1' });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    console.error(
      e.code === 'EADDRINUSE'
        ? `gateway: port ${cfg.gateway.port} is taken; stop what holds it, or set TEMPERED_GATEWAY_PORT (or TEMPERED_PORT_OFFSET)`
        : `gateway: ${e.message}`,
    );
    process.exit(1);
  }
  console.log(
    `gateway listening on ${cfg.gateway.url} (${cfg.gateway.key ? 'bearer key required' : 'no key'}; ` +
      `blocklist of ${gateway.blocklist.size}; models: ${gateway.routes.modelNames().join(', ') || 'none yet'})`,
  );
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(0), 10_000).unref();
    // Fastify stops accepting, closes idle connections and waits for the requests under way.
    void gateway.app
      .close()
      .then(() => gateway.close())
      .then(() => db.destroy())
      .then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(`gateway failed: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
