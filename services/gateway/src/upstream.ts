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

/** The client went away before the answer: the upstream request was stopped, nobody failed. */
export class ClientGone extends Error {}

/**
 * POSTs JSON to a model server over a kept-alive connection; resolves with any HTTP status, rejects with
 * UpstreamError, or ClientGone once `signal` aborts (closing the connection, which stops the model server).
 */
export function postJson(url: URL, payload: unknown, timeoutMs: number, signal?: AbortSignal, retried = false): Promise<{ status: number; body: any }> {
  const data = Buffer.from(JSON.stringify(payload));
  return new Promise((resolve, reject) => {
    const lib = url.protocol === 'https:' ? https : http;
    const req = lib.request(
      url,
      {
        method: 'POST',
        agent: agents[url.protocol as 'http:'],
        headers: { 'content-type': 'application/json', 'content-length': data.length, accept: 'application/json' },
        signal,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => reject(signal?.aborted ? new ClientGone() : new UpstreamError('upstream_unreachable', e.message)));
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
      if (signal?.aborted) return reject(new ClientGone());
      // A kept-alive connection the server closed just as we reused it: the request never reached it.
      if (req.reusedSocket && e.code === 'ECONNRESET' && !retried) return resolve(postJson(url, payload, timeoutMs, signal, true));
      reject(new UpstreamError('upstream_unreachable', e.code ? `${e.code} (${e.message})` : e.message));
    });
    req.end(data);
  });
}

/** A model server's streamed answer: its status, and either its JSON body (a refusal) or its events. */
export interface UpstreamStream {
  status: number;
  /** The JSON body, when the server answered without streaming (a refusal, an error). */
  body?: any;
  /** The `data:` payloads of the server-sent events, in order, until `[DONE]` (not included) or the end. */
  events?: AsyncIterable<string>;
  /** Stops the upstream request (closing its connection, which stops the model server's decoding). */
  abort(): void;
}

/**
 * POSTs a streaming request to a model server. Resolves once the response's head is in: with the JSON body
 * when the server refused (any status, or a 200 that is not an event stream), else with its events. The
 * timeout bounds the wait for the head and every gap between two chunks, not the whole stream: a long answer
 * streamed steadily is not cut. Rejects with UpstreamError; a stream that breaks later throws it from the
 * events' iterator.
 */
export function postStream(url: URL, payload: unknown, timeoutMs: number, retried = false): Promise<UpstreamStream> {
  const data = Buffer.from(JSON.stringify(payload));
  return new Promise((resolve, reject) => {
    const lib = url.protocol === 'https:' ? https : http;
    const req = lib.request(url, {
      method: 'POST',
      agent: agents[url.protocol as 'http:'],
      headers: { 'content-type': 'application/json', 'content-length': data.length, accept: 'text/event-stream' },
    });
    const abort = () => req.destroy();
    req.setTimeout(timeoutMs, () => req.destroy(new UpstreamError('upstream_timeout', `sent nothing for ${timeoutMs / 1000}s`)));
    req.on('response', (res) => {
      const status = res.statusCode ?? 502;
      if (status !== 200 || !String(res.headers['content-type'] ?? '').startsWith('text/event-stream')) {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => reject(new UpstreamError('upstream_unreachable', e.message)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status, body: JSON.parse(text), abort });
          } catch {
            reject(new UpstreamError('upstream_bad_response', `answered HTTP ${status} with a body that is not JSON: ${text.slice(0, 120)}`));
          }
        });
        return;
      }
      resolve({ status, events: sseData(res, req), abort });
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e instanceof UpstreamError) return reject(e);
      if (req.reusedSocket && e.code === 'ECONNRESET' && !retried) return resolve(postStream(url, payload, timeoutMs, true));
      reject(new UpstreamError('upstream_unreachable', e.code ? `${e.code} (${e.message})` : e.message));
    });
    req.end(data);
  });
}

/** The `data:` payloads of a server-sent event stream, until `[DONE]`; a stream cut short throws UpstreamError. */
async function* sseData(res: http.IncomingMessage, req: http.ClientRequest): AsyncGenerator<string> {
  let failure: Error | undefined;
  req.on('error', (e) => (failure = e));
  let buffer = '';
  let done = false;
  res.setEncoding('utf8');
  try {
    // After [DONE] the rest of the body (the chunked encoding's end) is read too, so the connection is kept.
    for await (const piece of res) {
      if (done) continue;
      buffer += piece as string;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).replace(/^ /, ''))
          .join('\n');
        if (data === '[DONE]') {
          done = true;
          break;
        }
        if (data) yield data;
      }
    }
  } catch (e) {
    failure ??= e as Error;
  }
  if (done) return;
  if (failure instanceof UpstreamError) throw failure;
  throw new UpstreamError('upstream_error', `ended its stream before [DONE]${failure ? `: ${failure.message}` : ''}`);
}
