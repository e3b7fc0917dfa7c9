/**
 * The credentials the embedded stack generates for itself: one record of named random secrets in
 * `<dataDir>/secrets.json` (mode 600), written by `stack up` at the first start, before PostgreSQL and S3
 * start, and read by `loadConfig` wherever the environment does not give a setting (DATABASE_URL, the AWS
 * keys). No secret is a default in the source, so a stack accepts only its own.
 *
 * A new secret is one more field of GENERATED: `ensureSecrets` adds a field missing from an existing file, so
 * an older data directory gains it at its next start and keeps the ones it has.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';

const base64url = (bytes: number) => () => randomBytes(bytes).toString('base64url');

/** How each secret is made. URL-safe characters only: the PostgreSQL password goes into a connection URL. */
const GENERATED = {
  /** The embedded PostgreSQL's superuser password, set at initdb (infra/src/postgres-host.ts). */
  postgresPassword: base64url(24),
  /** The embedded S3 server's root access key id: 20 upper-case hex characters, the shape of an AWS key id. */
  s3AccessKeyId: () => randomBytes(10).toString('hex').toUpperCase(),
  /** The embedded S3 server's root secret key. */
  s3SecretAccessKey: base64url(30),
} satisfies Record<string, () => string>;

export type GeneratedSecrets = { [K in keyof typeof GENERATED]: string };

export const secretsPath = (dataDir: string) => path.join(dataDir, 'secrets.json');

/**
 * The generated secrets, or undefined when there is no file to read: before the first `stack up`, or for a
 * user who is not the stack's owner (the file is theirs alone). A file that is not a JSON object is an error,
 * not a fresh start: generating new secrets over it would lock the stack out of its own database.
 */
export function readSecrets(dataDir: string): Partial<GeneratedSecrets> | undefined {
  const file = secretsPath(dataDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EACCES') return undefined;
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error(`${file} is not a JSON object of secrets; restore it from a backup (the embedded PostgreSQL's password is in it)`);
  }
  return parsed as Partial<GeneratedSecrets>;
}

/**
 * Reads the secrets record, generating every field it lacks, and keeps the file at mode 600 (written to a
 * temporary file beside it and renamed, so a crash never leaves half a record). Returns the names generated
 * now: the caller can tell a first start from a restart.
 */
export function ensureSecrets(dataDir: string): { secrets: GeneratedSecrets; generated: (keyof GeneratedSecrets)[] } {
  const file = secretsPath(dataDir);
  const existing = readSecrets(dataDir) ?? {};
  const missing = (Object.keys(GENERATED) as (keyof GeneratedSecrets)[]).filter((k) => typeof existing[k] !== 'string' || existing[k] === '');
  const secrets = { ...existing, ...Object.fromEntries(missing.map((k) => [k, GENERATED[k]()])) } as GeneratedSecrets;
  if (missing.length === 0) {
    chmodSync(file, 0o600); // a copy restored with a looser mode
    return { secrets, generated: [] };
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, `${JSON.stringify(secrets, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  return { secrets, generated: missing };
}
