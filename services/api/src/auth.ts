/**
 * People and credentials, kept in Postgres: users with scrypt-hashed passwords and a role, API tokens (for
 * scripts and the CLI) and dashboard sessions (a token in an HttpOnly cookie, expiring), of which only
 * SHA-256 digests are stored. Every decision and privileged change goes to the audit log (`audit`).
 *
 * At the first start of a stack, `ensureFirstUsers` creates admin, operator and approver with random
 * passwords and tokens, writes them once to `credentials.json` (mode 600) in the data directory for the
 * local CLI (the API's log says where the file is, never what is in it).
 */
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { CSRF_HEADER, ROLES, type Role, SESSION_COOKIE } from '@tempered/api-contract';
import { type Db, sql } from '@tempered/db';

const scrypt = promisify(scryptCb) as (password: string, salt: Buffer, keylen: number, options: object) => Promise<Buffer>;

export interface Principal {
  user: string;
  role: Role;
  /** How the caller authenticated: a cookie-borne session must also carry the CSRF header to change things. */
  via: 'token' | 'session';
}

const SCRYPT = { N: 16384, r: 8, p: 1 };
export const SESSION_HOURS = 12;

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(password, salt, 32, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

export async function verifyPassword(password: string, stored: string | null): Promise<boolean> {
  const parts = stored?.split('$');
  if (!parts || parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [, N, r, p, salt, hash] = parts;
  const expected = Buffer.from(hash, 'base64');
  const given = await scrypt(password, Buffer.from(salt, 'base64'), expected.length, { N: Number(N), r: Number(r), p: Number(p) });
  return timingSafeEqual(given, expected);
}

const digest = (token: string) => createHash('sha256').update(token).digest('hex');
const newToken = (kind: 'api' | 'session') => `${kind === 'api' ? 'tmp' : 'tms'}_${randomBytes(24).toString('base64url')}`;

export const credentialsPath = (dataDir: string) => path.join(dataDir, 'credentials.json');

export async function audit(
  db: Db,
  entry: { actor: string; action: string; target: string; comment?: string; details?: Record<string, unknown> },
): Promise<void> {
  await db
    .insertInto('audit_log')
    .values({ ...entry, comment: entry.comment ?? null, details: entry.details ? JSON.stringify(entry.details) : null })
    .execute();
}

export async function createUser(db: Db, username: string, role: Role, password: string | null): Promise<void> {
  await db
    .insertInto('users')
    .values({ username, role, password_hash: password === null ? null : await hashPassword(password) })
    .execute();
}

/** A new token; `expiresAt` null never expires (the first users' CLI tokens), sessions last SESSION_HOURS. */
export async function issueToken(
  db: Db, username: string, name: string, kind: 'api' | 'session', expiresAt: Date | null = kind === 'session' ? new Date(Date.now() + SESSION_HOURS * 3_600_000) : null,
): Promise<{ token: string; id: string; expiresAt: Date | null }> {
  const token = newToken(kind);
  const row = await db.insertInto('api_tokens').values({ username, name, kind, sha256: digest(token), expires_at: expiresAt }).returning('id').executeTakeFirstOrThrow();
  return { token, id: String(row.id), expiresAt };
}

/** Creates the first users when there are none; returns their plain credentials only then. */
export async function ensureFirstUsers(db: Db, dataDir: string): Promise<Record<string, { role: Role; token: string; password: string }> | undefined> {
  const existing = await db.selectFrom('users').select('username').limit(1).execute();
  if (existing.length > 0) return undefined;
  const plain: Record<string, { role: Role; token: string; password: string }> = {};
  for (const [user, role] of [['admin', 'admin'], ['operator', 'operator'], ['approver', 'approver']] as const) {
    const password = randomBytes(12).toString('base64url');
    await createUser(db, user, role, password);
    const { token } = await issueToken(db, user, 'local CLI', 'api');
    plain[user] = { role, token, password };
    await audit(db, { actor: 'setup', action: 'user.create', target: `user:${user}`, details: { role } });
  }
  await mkdir(dataDir, { recursive: true });
  await writeFile(credentialsPath(dataDir), JSON.stringify(plain, null, 2), { mode: 0o600 });
  return plain;
}

function cookieOf(req: http.IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

export function sessionCookie(token: string, expiresAt: Date | null): string {
  const expires = expiresAt ? `; Expires=${expiresAt.toUTCString()}` : '';
  return `${SESSION_COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/${expires}`;
}
export const clearedSessionCookie = `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`;

/** Sign-in throttling: failures are counted per client and user, and per client, over one window. */
export const LOGIN_THROTTLE = { windowMs: 300_000, perClientAndUser: 5, perClient: 50 } as const;

/**
 * Resolves the caller of a request from its bearer token or session cookie. Lookups are cached for a few
 * seconds, so a busy dashboard costs no database round trip per request; every change to a user or token made
 * through this process (revoke, disable, role, password) drops that user's cached entries at once.
 */
export class Authenticator {
  private readonly cache = new Map<string, { principal: Principal | undefined; until: number }>();
  /** Failed sign-ins by `client\nusername` (one client guessing one user) and by `client` (one client spraying many). */
  private readonly failures = new Map<string, { count: number; since: number }>();
  /** Checked when the user is unknown or cannot sign in, so every wrong answer costs one scrypt. */
  private readonly dummyHash = hashPassword(randomBytes(16).toString('hex'));

  constructor(
    private readonly db: Db,
    /** TEMPERED_API_TOKEN, when set, is an extra admin credential (for production secrets managers). */
    private readonly extraToken?: string,
  ) {}

  async authenticate(req: http.IncomingMessage): Promise<Principal | undefined> {
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const token = bearer ?? cookieOf(req, SESSION_COOKIE);
    if (!token) return undefined;
    const via: Principal['via'] = bearer ? 'token' : 'session';
    if (this.extraToken && bearer && timingSafeEqual(Buffer.from(digest(bearer), 'hex'), Buffer.from(digest(this.extraToken), 'hex'))) {
      return { user: 'admin', role: 'admin', via };
    }
    const key = digest(token);
    const hit = this.cache.get(key);
    if (hit && hit.until > Date.now()) return hit.principal && { ...hit.principal, via };
    const row = await this.db
      .selectFrom('api_tokens')
      .innerJoin('users', 'users.username', 'api_tokens.username')
      .select(['users.username', 'users.role', 'api_tokens.id', 'api_tokens.expires_at'])
      .where('api_tokens.sha256', '=', key)
      .where('api_tokens.revoked_at', 'is', null)
      .where('users.disabled_at', 'is', null)
      .where((eb) => eb.or([eb('api_tokens.expires_at', 'is', null), eb('api_tokens.expires_at', '>', sql<Date>`now()`)]))
      .executeTakeFirst();
    const principal = row ? { user: row.username, role: row.role as Role, via } : undefined;
    if (this.cache.size > 10_000) this.cache.clear();
    // Never cached past the token's expiry.
    const until = Math.min(Date.now() + 5000, row?.expires_at ? new Date(row.expires_at).getTime() : Infinity);
    this.cache.set(key, { principal, until });
    if (row) void this.db.updateTable('api_tokens').set({ last_used_at: sql`now()` }).where('id', '=', row.id).execute().catch(() => {});
    return principal;
  }

  /**
   * Drops the cached lookups of a user's tokens, so a revocation, disabling or role change holds at once, and
   * the cached refusals (which name no user), so re-enabling one holds at once too.
   */
  forgetUser(username: string): void {
    for (const [key, entry] of this.cache) if (entry.principal === undefined || entry.principal.user === username) this.cache.delete(key);
  }

  private locked(key: string): boolean {
    const f = this.failures.get(key);
    const limit = key.includes('\n') ? LOGIN_THROTTLE.perClientAndUser : LOGIN_THROTTLE.perClient;
    return f !== undefined && Date.now() - f.since < LOGIN_THROTTLE.windowMs && f.count >= limit;
  }

  private fail(key: string): void {
    const f = this.failures.get(key);
    const fresh = !f || Date.now() - f.since >= LOGIN_THROTTLE.windowMs;
    if (this.failures.size > 10_000) this.failures.clear();
    this.failures.set(key, { count: fresh ? 1 : f.count + 1, since: fresh ? Date.now() : f.since });
  }

  /**
   * Password sign-in from `client` (the peer's address). Five failures for one user from one client within
   * 5 minutes lock that pair, and fifty from one client lock the client, for the rest of the window: a guesser
   * elsewhere cannot lock a user out, and an admin can unlock at once. Unknown, disabled and password-less users
   * are checked against a dummy hash, so the answer takes the same time whether the user exists or not.
   */
  async login(username: string, password: string, client: string): Promise<{ token: string; expiresAt: Date; role: Role } | 'locked' | undefined> {
    const pair = `${client}\n${username}`;
    if (this.locked(pair) || this.locked(client)) return 'locked';
    const user = await this.db.selectFrom('users').selectAll().where('username', '=', username).executeTakeFirst();
    const usable = user !== undefined && user.disabled_at === null && user.password_hash !== null;
    const matches = await verifyPassword(password, usable ? user.password_hash : await this.dummyHash);
    if (!usable || !matches) {
      this.fail(pair);
      this.fail(client);
      return undefined;
    }
    this.failures.delete(pair);
    const { token, expiresAt } = await issueToken(this.db, username, 'dashboard session', 'session');
    return { token, expiresAt: expiresAt!, role: user.role as Role };
  }

  /** Clears a user's sign-in lockouts (and those of the clients that caused them); the count of pairs cleared. */
  unlock(username: string): number {
    let cleared = 0;
    for (const key of [...this.failures.keys()]) {
      const [client, user] = key.split('\n');
      if (user !== username) continue;
      this.failures.delete(key);
      this.failures.delete(client);
      cleared++;
    }
    return cleared;
  }

  async logout(req: http.IncomingMessage): Promise<void> {
    const token = cookieOf(req, SESSION_COOKIE);
    if (!token) return;
    await this.db.updateTable('api_tokens').set({ revoked_at: sql`now()` }).where('sha256', '=', digest(token)).execute();
    this.cache.delete(digest(token));
  }
}

/** A cookie-authenticated request that changes something must carry the CSRF header. */
export function csrfOk(req: http.IncomingMessage, who: Principal): boolean {
  return who.via === 'token' || req.method === 'GET' || req.headers[CSRF_HEADER] === '1';
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}
