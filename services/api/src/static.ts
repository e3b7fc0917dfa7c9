/**
 * Serves the dashboard's built files (services/dashboard/dist). Any path that is not a file is the
 * single-page app's own route, so it gets index.html. Paths are resolved inside the dist folder only.
 * Every response of the API carries SECURITY_HEADERS (set by the server's first hook).
 */
import { createReadStream, existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { repoRoot } from '@tempered/config';
import type { FastifyReply } from 'fastify';

const dist = path.join(repoRoot, 'services', 'dashboard', 'dist');
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};
export const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
};

export async function serveDashboard(pathname: string, reply: FastifyReply): Promise<FastifyReply> {
  if (!existsSync(path.join(dist, 'index.html'))) {
    return reply.code(503).type('text/plain; charset=utf-8').send('The dashboard is not built: run `npm run build -w @tempered/dashboard` (npm start does it).\n');
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    decoded = '/';
  }
  let file = path.resolve(dist, `.${decoded}`);
  if (!file.startsWith(dist + path.sep) || !(await stat(file).then((s) => s.isFile(), () => false))) file = path.join(dist, 'index.html');
  const ext = path.extname(file);
  // Built assets carry a content hash in their names: cache them for good; index.html never.
  const cache = file.includes(`${path.sep}assets${path.sep}`) ? 'public, max-age=31536000, immutable' : 'no-cache';
  return reply.code(200).type(TYPES[ext] ?? 'application/octet-stream').header('cache-control', cache).send(createReadStream(file));
}
