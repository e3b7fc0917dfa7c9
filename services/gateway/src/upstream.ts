/**
 * The upstream proxy: how the gateway talks to a model server. One JSON POST over kept-alive connections,
 * bounded by the upstream timeout, with every way it can fail named (UpstreamFailure), so a route can turn it
 * into a 502/504 and a metric. A connection the server closed just as it was reused is retried once.
 */
import http from 'node:http';
import https from 'node:https';

export type UpstreamFailure = 'upstream_unreachable' | 'upstream_timeout' | 'upstream_error' | 'upstream_bad_response';

export class UpstreamError extends Error {
  constructor(
    readonly reason: UpstreamFailure,
    message: string,
  ) {
    super(message);
  }
}

const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 256 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 256 }),
};

/** POSTs JSON to a model server over a kept-alive connection; resolves with any HTTP status, rejects with UpstreamError. */
export function postJson(url: URL, payload: unknown, timeoutMs: number, retried = false): Promise<{ status: number; body: any }> {
  const data = Buffer.from(JSON.stringify(payload));
  return new Promise((resolve, reject) => {
    const lib = url.protocol === 'https:' ? https : http;
    const req = lib.request(
      url,
      {
        method: 'POST',
        agent: agents[url.protocol as 'http:'],
        headers: { 'content-type': 'application/json', 'content-length': data.length, accept: 'application/json' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => reject(new UpstreamError('upstream_unreachable', e.message)));
        res.on('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode ?? 502, body: JSON.parse(text) });
          } catch {
            reject(new UpstreamError('upstream_bad_response', `answered HTTP ${res.statusCode} with a body that is not JSON: ${text.slice(0, 120)}`));
          }
        });
      },
    );
    const timer = setTimeout(() => req.destroy(new UpstreamError('upstream_timeout', `no answer within ${timeoutMs / 1000}s`)), timeoutMs);
    req.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e instanceof UpstreamError) return reject(e);
      // A kept-alive connection the server closed just as we reused it: the request never reached it.
      if (req.reusedSocket && e.code === 'ECONNRESET' && !retried) return resolve(postJson(url, payload, timeoutMs, true));
      reject(new UpstreamError('upstream_unreachable', e.code ? `${e.code} (${e.message})` : e.message));
    });
    req.end(data);
  });
}
