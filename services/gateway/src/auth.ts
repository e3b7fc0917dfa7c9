/**
 * Authentication by gateway key: with TEMPERED_GATEWAY_KEY set, every request but the health check must send
 * `Authorization: Bearer <key>`, checked before its body is read; without a key the gateway is open. The key
 * is compared as a sha256 digest in constant time, and never logged.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { HttpError, normalizedPath } from './errors';

/** Paths that never need the key. */
export const OPEN_PATHS = new Set(['/healthz', '/health']);

/** Whether an Authorization header carries the key (always, when there is no key). */
export function bearerCheck(key: string | undefined): (header: string | undefined) => boolean {
  if (!key) return () => true;
  const digest = createHash('sha256').update(key).digest();
  return (header) => {
    const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
    return !!m && timingSafeEqual(createHash('sha256').update(m[1].trim()).digest(), digest);
  };
}

/** Refuses, with 401, every request without the key (unknown routes included, so they reveal nothing). */
export function installAuth(app: FastifyInstance, key: string | undefined): void {
  const authorized = bearerCheck(key);
  app.addHook('onRequest', async (req) => {
    if (OPEN_PATHS.has(normalizedPath(req.url))) return;
    if (!authorized(req.headers.authorization)) {
      throw new HttpError(401, 'missing or wrong bearer key: send "Authorization: Bearer <key>" (the gateway was started with TEMPERED_GATEWAY_KEY)');
    }
  });
}
