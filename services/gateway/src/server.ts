/**
 * The inference gateway: an OpenAI-compatible front for the model versions recorded in `routes`, with the
 * use stage's processing around every call and a feedback channel that feeds the next RLHF run.
 *
 *   POST /v1/completions          {model, prompt, ...}          OpenAI completions; other fields go to the model
 *   POST /v1/chat/completions     {model, messages, ...}        OpenAI chat; the whole conversation goes upstream
 *   GET  /v1/models               model names routable now, with their versions and weights; and each version
 *   POST /v1/feedback             {request_id, rating: "up"|"down", comment?}
 *   POST /v1/feedback/pairwise    {prompt, response_a, response_b, preferred: "a"|"b"|"tie", request_ids?, model?, comment?}
 *   GET  /metrics                 Prometheus text: requests, errors and latency per model version, feedback
 *   GET  /healthz                 {status: "ok"}, never needs the key
 *
 * `model` is a model name (traffic split between its versions by weight, sticky per client: the
 * `x-client-key` header, else the body's `user`, else the client's address) or a version id (pinned to it).
 * The upstream is asked for `model: <version id>`, so a vLLM upstream must serve it under that name
 * (`--served-model-name`). A chat request goes upstream as a chat (every turn normalized), so the model server
 * renders it with the model's own chat template, system prompt and earlier turns included, exactly as the
 * model was trained; the request log records its last user message as the prompt.
 *
 * Every response carries `x-request-id` (also the body's `id`, also in error bodies) and, once routed,
 * `x-model-version`. Prompts are normalized like training data (NFKC, control characters, whitespace);
 * blocked words in the output become "[BLOCKED]", with `finish_reason: "content_filter"` on that choice and
 * `tempered.flagged: true`. Errors use OpenAI's shape `{error: {message, type, param?, code}}`: 400 names
 * the field (`param`), 404 for an unknown model lists the available ones, 502/504 when the model server is
 * down, fails or is too slow. With TEMPERED_GATEWAY_KEY set, every route but /healthz needs
 * `Authorization: Bearer <key>`. One log line per request: method, path, status, time, version, request id;
 * never prompt text or keys.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Config } from '@tempered/config';
import { type Db, type Route } from '@tempered/db';
import { GatewayMetrics } from './metrics';
import { Blocklist, type ChatTurn, chatTurns, FieldError, lastUserText, normalizePrompt } from './processing';
import { RequestLog, type RequestRecord } from './request-log';
import { pickRoute, RouteTable, stickyPoint } from './routing';

const MAX_BODY = 1024 * 1024;
const MAX_COMMENT = 4000;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly param?: string,
  ) {
    super(message);
  }
}

type UpstreamFailure = 'upstream_unreachable' | 'upstream_timeout' | 'upstream_error' | 'upstream_bad_response';

class UpstreamError extends Error {
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
function postJson(url: URL, payload: unknown, timeoutMs: number, retried = false): Promise<{ status: number; body: any }> {
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

async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `request body over ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new HttpError(400, `the body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'the body must be a JSON object');
  return body as Record<string, unknown>;
}

function optionalString(body: Record<string, unknown>, field: string, max = MAX_COMMENT): string | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new FieldError(field, 'must be a string');
  if (v.length > max) throw new FieldError(field, `must be at most ${max} characters`);
  return v;
}

/** A non-blank string field, as given. */
function requiredText(body: Record<string, unknown>, field: string): string {
  const v = body[field];
  if (typeof v !== 'string' || v.trim() === '') throw new FieldError(field, 'must be a non-empty string');
  if (v.length > MAX_BODY) throw new FieldError(field, 'is too long');
  return v;
}

/** Fields of a chat request that mean the same in a completion request. */
const CHAT_PASSTHROUGH = ['max_tokens', 'temperature', 'top_p', 'n', 'stop', 'seed', 'presence_penalty', 'frequency_penalty', 'user'];

interface Ctx {
  id: string;
  /** Set once the request is routed. */
  model?: string;
  version?: string;
  /** Set when the request reached the point of calling a model server: it is then recorded. */
  record?: Omit<RequestRecord, 'latency_ms' | 'status' | 'id'>;
}

interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  text?: string;
}

export interface GatewayDeps {
  cfg: Config;
  db: Db;
  /** Defaults to the config's TEMPERED_BLOCKLIST and TEMPERED_BLOCKLIST_FILE. */
  blocklist?: Blocklist;
}

export interface Gateway {
  server: http.Server;
  routes: RouteTable;
  metrics: GatewayMetrics;
  requestLog: RequestLog;
  blocklist: Blocklist;
  /** Loads the routes and starts following their changes; call before listening. */
  start(): Promise<void>;
  /** Stops following routes and writes the request records still waiting. */
  close(): Promise<void>;
}

export function createGateway({ cfg, db, blocklist = Blocklist.load(cfg.gateway.blocklist, cfg.gateway.blocklistFile) }: GatewayDeps): Gateway {
  const metrics = new GatewayMetrics();
  const requestLog = new RequestLog(db, metrics);
  const routes = new RouteTable(db, cfg.databaseUrl, (table) => {
    metrics.routeWeight.reset();
    for (const m of table.allModels()) for (const r of m.routes) metrics.routeWeight.set({ model: m.name, version: r.modelVersionId }, r.weight);
  });
  const keyDigest = cfg.gateway.key ? createHash('sha256').update(cfg.gateway.key).digest() : undefined;

  function authorized(header: string | undefined): boolean {
    if (!keyDigest) return true;
    const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
    if (!m) return false;
    return timingSafeEqual(createHash('sha256').update(m[1].trim()).digest(), keyDigest);
  }

  function noRoute(model: string): HttpError {
    const available = routes.modelNames();
    return new HttpError(
      404,
      `no route for model '${model}': ${available.length ? `available models are ${available.join(', ')}` : 'no model is deployed behind the gateway yet'}`,
      { available_models: available },
      'model',
    );
  }

  async function complete(kind: 'completion' | 'chat', req: http.IncomingMessage, ctx: Ctx): Promise<Reply> {
    const body = await readJson(req);
    if (typeof body.model !== 'string' || body.model === '') {
      throw new FieldError('model', `must be a model name (${routes.modelNames().join(', ') || 'none deployed yet'}) or a model version id`);
    }
    if (body.stream === true) throw new FieldError('stream', 'streaming is not supported by the gateway; leave it out or send false');
    let prompt: string;
    let turns: ChatTurn[] | undefined;
    if (kind === 'completion') {
      const raw = Array.isArray(body.prompt) && body.prompt.length === 1 ? body.prompt[0] : body.prompt;
      if (typeof raw !== 'string') throw new FieldError('prompt', 'must be a string (or a list of exactly one string)');
      prompt = normalizePrompt(raw);
      if (prompt === '') throw new FieldError('prompt', 'is empty once normalized');
    } else {
      turns = chatTurns(body.messages);
      prompt = lastUserText(turns);
    }

    const resolved = routes.resolve(body.model);
    if (!resolved) throw noRoute(body.model);
    const clientKey = (req.headers['x-client-key'] as string | undefined) || (typeof body.user === 'string' && body.user) || req.socket.remoteAddress || '';
    const route: Route = resolved.pinned ?? pickRoute(resolved.model, stickyPoint(resolved.model.name, clientKey));
    ctx.model = route.modelName;
    ctx.version = route.modelVersionId;
    ctx.record = { model_name: route.modelName, model_version_id: route.modelVersionId, kind, prompt, response: null, flagged: false, error: null };

    const upstreamBody: Record<string, unknown> = {};
    if (kind === 'completion') {
      for (const [k, v] of Object.entries(body)) if (k !== 'model' && k !== 'prompt') upstreamBody[k] = v;
    } else {
      for (const k of CHAT_PASSTHROUGH) if (body[k] !== undefined) upstreamBody[k] = body[k];
      if (body.max_tokens === undefined && body.max_completion_tokens !== undefined) upstreamBody.max_tokens = body.max_completion_tokens;
    }
    upstreamBody.model = route.modelVersionId;
    // A chat goes upstream as a chat: the model server renders the whole conversation with its chat template.
    if (turns) upstreamBody.messages = turns;
    else upstreamBody.prompt = prompt;

    const labels = { model: route.modelName, version: route.modelVersionId };
    const t0 = performance.now();
    let up: { status: number; body: any };
    try {
      up = await postJson(new URL(`${route.endpoint}/v1/${kind === 'chat' ? 'chat/completions' : 'completions'}`), upstreamBody, cfg.gateway.upstreamTimeoutMs);
      if (up.status >= 500) {
        const message = up.body?.error?.message ?? JSON.stringify(up.body).slice(0, 200);
        throw new UpstreamError('upstream_error', `answered HTTP ${up.status}: ${message}`);
      }
      const textOf = (c: any) => (kind === 'chat' ? c?.message?.content : c?.text);
      if (up.status < 400 && (!Array.isArray(up.body?.choices) || !up.body.choices.every((c: any) => typeof textOf(c) === 'string'))) {
        throw new UpstreamError('upstream_bad_response', `answered without choices[].${kind === 'chat' ? 'message.content' : 'text'}`);
      }
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      metrics.errors.inc({ ...labels, reason: err.reason });
      const message = `the model server of ${route.modelVersionId} (${route.endpoint}) ${err.message}`;
      ctx.record.error = message.slice(0, 1000);
      throw new HttpError(err.reason === 'upstream_timeout' ? 504 : 502, message);
    } finally {
      metrics.upstreamLatency.observe(labels, (performance.now() - t0) / 1000);
    }

    if (up.status >= 400) {
      // The model server refused the request (a bad max_tokens, say): pass its answer on, it names the field.
      const message = up.body?.error?.message ?? `the model server answered HTTP ${up.status}`;
      ctx.record.error = String(message).slice(0, 1000);
      return { status: up.status, body: { id: ctx.id, error: { ...(up.body?.error ?? {}), message } } };
    }

    let flagged = false;
    const choices = (up.body.choices as Array<{ index?: number; text?: string; message?: { content: string }; finish_reason?: string; logprobs?: unknown }>).map((c, i) => {
      const out = blocklist.filter(kind === 'chat' ? c.message!.content : c.text!);
      flagged ||= out.flagged;
      const finish_reason = out.flagged ? 'content_filter' : (c.finish_reason ?? null);
      return kind === 'completion'
        ? { index: c.index ?? i, text: out.text, logprobs: c.logprobs ?? null, finish_reason }
        : { index: c.index ?? i, message: { role: 'assistant', content: out.text }, logprobs: null, finish_reason };
    });
    if (flagged) metrics.flagged.inc(labels);
    ctx.record.response = kind === 'completion' ? (choices[0] as { text: string }).text : (choices[0] as { message: { content: string } }).message.content;
    ctx.record.flagged = flagged;
    return {
      status: 200,
      body: {
        id: ctx.id,
        object: kind === 'completion' ? 'text_completion' : 'chat.completion',
        created: typeof up.body.created === 'number' ? up.body.created : Math.floor(Date.now() / 1000),
        model: route.modelVersionId,
        choices,
        usage: up.body.usage,
        tempered: { model: route.modelName, model_version: route.modelVersionId, flagged },
      },
    };
  }

  /** The served request behind a feedback, written first if it is still waiting in the request log. */
  async function servedRequest(id: unknown, field: string) {
    if (typeof id !== 'string' || id === '') throw new FieldError(field, 'must be the id of a gateway response (its x-request-id header or body id)');
    if (requestLog.has(id)) await requestLog.settle(id);
    const row = await db.selectFrom('gateway_requests').select(['id', 'model_name', 'model_version_id', 'prompt', 'response']).where('id', '=', id).executeTakeFirst();
    if (!row) throw new HttpError(404, `${field}: no request ${id} was served by this gateway (use the x-request-id header or the body id of a /v1/completions or /v1/chat/completions response)`, {}, field);
    return row;
  }

  async function rate(req: http.IncomingMessage): Promise<Reply> {
    const body = await readJson(req);
    if (body.rating !== 'up' && body.rating !== 'down') throw new FieldError('rating', 'must be "up" or "down"');
    const comment = optionalString(body, 'comment');
    const served = await servedRequest(body.request_id, 'request_id');
    const row = await db
      .insertInto('feedback_ratings')
      .values({ request_id: served.id, model_name: served.model_name, model_version_id: served.model_version_id, rating: body.rating, comment: comment ?? null })
      .returning(['id', 'created_at'])
      .executeTakeFirstOrThrow();
    metrics.feedback.inc({ model: served.model_name, version: served.model_version_id, rating: body.rating });
    return { status: 201, body: { id: row.id, request_id: served.id, model: served.model_name, model_version: served.model_version_id, rating: body.rating, created_at: row.created_at } };
  }

  async function pairwise(req: http.IncomingMessage): Promise<Reply> {
    const body = await readJson(req);
    // The prompt is normalized as served prompts are, so that it matches them; responses stay as the client saw them.
    const prompt = normalizePrompt(requiredText(body, 'prompt'));
    if (prompt === '') throw new FieldError('prompt', 'is empty once normalized');
    const responseA = requiredText(body, 'response_a');
    const responseB = requiredText(body, 'response_b');
    if (body.preferred !== 'a' && body.preferred !== 'b' && body.preferred !== 'tie') throw new FieldError('preferred', 'must be "a", "b" or "tie"');
    const comment = optionalString(body, 'comment');
    let model = optionalString(body, 'model', 200);
    let served: Array<Awaited<ReturnType<typeof servedRequest>> | undefined> = [undefined, undefined];
    if (body.request_ids !== undefined && body.request_ids !== null) {
      const ids = body.request_ids;
      if (!Array.isArray(ids) || ids.length !== 2) throw new FieldError('request_ids', 'must be two request ids: the one that answered response_a, then response_b (null for one not served here)');
      served = await Promise.all(ids.map((id, i) => (id === null ? undefined : servedRequest(id, `request_ids[${i}]`))));
      model ??= served[0]?.model_name ?? served[1]?.model_name;
    }
    const row = await db
      .insertInto('feedback_pairwise')
      .values({
        model_name: model ?? null,
        prompt,
        response_a: responseA,
        response_b: responseB,
        preferred: body.preferred,
        request_id_a: served[0]?.id ?? null,
        request_id_b: served[1]?.id ?? null,
        model_version_a: served[0]?.model_version_id ?? null,
        model_version_b: served[1]?.model_version_id ?? null,
        comment: comment ?? null,
      })
      .returning(['id', 'created_at'])
      .executeTakeFirstOrThrow();
    return { status: 201, body: { id: row.id, model: model ?? null, preferred: body.preferred, created_at: row.created_at } };
  }

  function listModels(): Reply {
    const data = routes.allModels().flatMap((m) => {
      const created = Math.floor(Math.max(...m.routes.map((r) => r.updatedAt.getTime())) / 1000);
      const versions = m.routes.map((r) => ({ id: r.modelVersionId, weight: r.weight, share: r.weight / m.total }));
      return [
        { id: m.name, object: 'model', created, owned_by: 'tempered', versions },
        ...m.routes.map((r) => ({ id: r.modelVersionId, object: 'model', created: Math.floor(r.updatedAt.getTime() / 1000), owned_by: 'tempered', parent: m.name, weight: r.weight })),
      ];
    });
    return { status: 200, body: { object: 'list', data } };
  }

  async function handle(req: http.IncomingMessage, ctx: Ctx, path: string): Promise<Reply> {
    const method = req.method ?? 'GET';
    if (path === '/healthz' || path === '/health') return { status: 200, body: { status: 'ok', models: routes.modelNames().length } };
    if (!authorized(req.headers.authorization)) {
      throw new HttpError(401, 'missing or wrong bearer key: send "Authorization: Bearer <key>" (the gateway was started with TEMPERED_GATEWAY_KEY)');
    }
    if (method === 'POST' && path === '/v1/completions') return complete('completion', req, ctx);
    if (method === 'POST' && path === '/v1/chat/completions') return complete('chat', req, ctx);
    if (method === 'GET' && path === '/v1/models') return listModels();
    if (method === 'POST' && path === '/v1/feedback') return rate(req);
    if (method === 'POST' && path === '/v1/feedback/pairwise') return pairwise(req);
    if (method === 'GET' && path === '/metrics') return { status: 200, body: undefined, text: metrics.render(), headers: { 'content-type': 'text/plain; version=0.0.4' } };
    throw new HttpError(404, `no route ${method} ${path}`);
  }

  function errorReply(err: unknown, ctx: Ctx, path: string, method: string): Reply {
    if (err instanceof FieldError) return { status: 400, body: { id: ctx.id, error: { message: err.message, type: 'invalid_request_error', param: err.param, code: 400 } } };
    if (err instanceof HttpError) {
      const type = { 400: 'invalid_request_error', 401: 'authentication_error', 404: 'not_found_error', 413: 'invalid_request_error' }[err.status] ?? 'upstream_error';
      return { status: err.status, body: { id: ctx.id, error: { message: err.message, type, param: err.param ?? null, code: err.status }, ...err.extra } };
    }
    console.error(`${method} ${path} ${ctx.id} failed:`, err);
    return { status: 500, body: { id: ctx.id, error: { message: 'internal error; see the gateway log', type: 'server_error', code: 500 } } };
  }

  const server = http.createServer((req, res) => {
    const started = performance.now();
    const ctx: Ctx = { id: `req-${randomUUID()}` };
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?', 1)[0].replace(/(.)\/+$/, '$1');
    handle(req, ctx, path)
      .catch((err: unknown) => errorReply(err, ctx, path, method))
      .then((reply) => {
        const headers: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': ctx.id, ...reply.headers };
        if (ctx.version) headers['x-model-version'] = ctx.version;
        res.writeHead(reply.status, headers);
        res.end(reply.text ?? JSON.stringify(reply.body));
        const ms = performance.now() - started;
        if (path === '/v1/completions' || path === '/v1/chat/completions') {
          const labels = { model: ctx.model ?? 'none', version: ctx.version ?? 'none' };
          metrics.requests.inc({ ...labels, status: String(reply.status) });
          if (ctx.version) metrics.latency.observe(labels, ms / 1000);
          if (ctx.record) requestLog.add({ ...ctx.record, id: ctx.id, at: new Date(Date.now() - ms), status: reply.status, latency_ms: ms });
        }
        if (path !== '/healthz' && path !== '/metrics') console.log(`${method} ${path} ${reply.status} ${ms.toFixed(1)}ms version=${ctx.version ?? '-'} id=${ctx.id}`);
      });
  });

  return {
    server,
    routes,
    metrics,
    requestLog,
    blocklist,
    start: () => routes.start(),
    async close() {
      await routes.close();
      await requestLog.drain();
    },
  };
}
