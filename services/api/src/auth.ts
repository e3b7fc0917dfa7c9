/**
 * API credentials for the embedded stack: bearer tokens mapped to a user and a role. Only token digests are
 * kept in `api-tokens.json`; the plain tokens are written once, at setup, to `credentials.json` (mode 600)
 * for the local CLI and printed once.
 *
 * Roles: `operator` starts runs; `approver` decides deployment gates; `admin` does both. Nobody approves a
 * run they started (the workflow's Update validator enforces that too).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

export type Role = 'operator' | 'approver' | 'admin';
export interface Principal {
  user: string;
  role: Role;
}
interface StoredToken extends Principal {
  sha256: string;
}

const digest = (token: string) => createHash('sha256').update(token).digest();

export const credentialsPath = (dataDir: string) => path.join(dataDir, 'credentials.json');
const tokensPath = (dataDir: string) => path.join(dataDir, 'api-tokens.json');

/** Creates the first users' tokens if there are none yet; returns the plain tokens only when it created them. */
export async function ensureTokens(dataDir: string): Promise<Record<string, { token: string; role: Role }> | undefined> {
  if (existsSync(tokensPath(dataDir))) return undefined;
  const users: Principal[] = [
    { user: 'operator', role: 'operator' },
    { user: 'approver', role: 'approver' },
    { user: 'admin', role: 'admin' },
  ];
  const plain: Record<string, { token: string; role: Role }> = {};
  const stored: StoredToken[] = users.map((u) => {
    const token = `tmp_${randomBytes(24).toString('base64url')}`;
    plain[u.user] = { token, role: u.role };
    return { ...u, sha256: digest(token).toString('hex') };
  });
  await mkdir(dataDir, { recursive: true });
  await writeFile(credentialsPath(dataDir), JSON.stringify(plain, null, 2), { mode: 0o600 });
  await writeFile(tokensPath(dataDir), JSON.stringify(stored, null, 2), { mode: 0o600 });
  return plain;
}

export class TokenStore {
  private readonly tokens: StoredToken[];

  constructor(dataDir: string, extraToken?: string) {
    this.tokens = existsSync(tokensPath(dataDir)) ? JSON.parse(readFileSync(tokensPath(dataDir), 'utf8')) : [];
    // TEMPERED_API_TOKEN, when set on the API, is an extra admin credential (for production secrets managers).
    if (extraToken) this.tokens.push({ user: 'admin', role: 'admin', sha256: digest(extraToken).toString('hex') });
  }

  /** The principal of an `Authorization: Bearer …` header, compared in constant time. */
  authenticate(header: string | undefined): Principal | undefined {
    const m = /^Bearer\s+(\S+)$/i.exec(header ?? '');
    if (!m) return undefined;
    const given = digest(m[1]);
    const found = this.tokens.find((t) => timingSafeEqual(Buffer.from(t.sha256, 'hex'), given));
    return found ? { user: found.user, role: found.role } : undefined;
  }
}

export function can(principal: Principal, action: 'start' | 'approve' | 'read'): boolean {
  if (action === 'read') return true;
  if (principal.role === 'admin') return true;
  return action === 'start' ? principal.role === 'operator' : principal.role === 'approver';
}
