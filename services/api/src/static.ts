/**
 * Serves the dashboard's built files (services/dashboard/dist). Any path that is not a file is the
 * single-page app's own route, so it gets index.html. Paths are resolved inside the dist folder only.
 */
import { createReadStream, existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import { repoRoot } from '@tempered/config';

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

export async function serveDashboard(url: URL, res: http.ServerResponse): Promise<void> {
  if (!existsSync(path.join(dist, 'index.html'))) {
    res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('The dashboard is not built: run `npm run build -w @tempered/dashboard` (npm start does it).\n');
    return;
  }
  let file = path.resolve(dist, `.${decodeURIComponent(url.pathname)}`);
  if (!file.startsWith(dist + path.sep) || !(await stat(file).then((s) => s.isFile(), () => false))) file = path.join(dist, 'index.html');
  const ext = path.extname(file);
  // Built assets carry a content hash in their names: cache them for good; index.html never.
  const cache = file.includes(`${path.sep}assets${path.sep}`) ? 'public, max-age=31536000, immutable' : 'no-cache';
  res.writeHead(200, { 'content-type': TYPES[ext] ?? 'application/octet-stream', 'cache-control': cache, ...SECURITY_HEADERS });
  createReadStream(file).pipe(res);
}
