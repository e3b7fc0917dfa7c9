/**
 * The gateway process: connects to Postgres (migrating it), loads the routes, and serves HTTP on
 * TEMPERED_GATEWAY_PORT (8070 + TEMPERED_PORT_OFFSET). SIGTERM stops accepting requests, lets those under way
 * finish and writes the request records still waiting.
 */
import { loadConfig } from '@tempered/config';
import { createDb, migrateToLatest } from '@tempered/db';
import { createGateway } from './server';

async function main(): Promise<void> {
  const cfg = loadConfig();
  const db = createDb(cfg.databaseUrl, 8);
  await migrateToLatest(db);
  const gateway = createGateway({ cfg, db });
  await gateway.start();
  gateway.server.keepAliveTimeout = 65_000; // longer than the usual load balancer's idle timeout
  gateway.server.on('error', (err: NodeJS.ErrnoException) => {
    console.error(
      err.code === 'EADDRINUSE'
        ? `gateway: port ${cfg.gateway.port} is taken; stop what holds it, or set TEMPERED_GATEWAY_PORT (or TEMPERED_PORT_OFFSET)`
        : `gateway: ${err.message}`,
    );
    process.exit(1);
  });
  gateway.server.listen(cfg.gateway.port, '127.0.0.1', () =>
    console.log(
      `gateway listening on ${cfg.gateway.url} (${cfg.gateway.key ? 'bearer key required' : 'no key'}; ` +
        `blocklist of ${gateway.blocklist.size}; models: ${gateway.routes.modelNames().join(', ') || 'none yet'})`,
    ),
  );
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    gateway.server.close(() => void gateway.close().then(() => db.destroy()).then(() => process.exit(0)));
    gateway.server.closeIdleConnections();
    setTimeout(() => process.exit(0), 10_000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(`gateway failed: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
