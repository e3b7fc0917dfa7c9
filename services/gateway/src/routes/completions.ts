/**
 * POST /v1/completions and POST /v1/chat/completions: the OpenAI calls. Each is validated (schemas.ts), its
 * text normalized (processing.ts), routed to a model version (routing.ts: by weight, sticky per client key,
 * or pinned by version id), sent to that version's model server (upstream.ts), and its output filtered by the
 * blocklist. A chat goes upstream as a chat, every turn normalized, for the model server to render with the
 * model's own template; the request log records its last user message as the prompt.
 *
 * `stream: true` answers server-sent events in OpenAI's chunk format, relayed chunk by chunk from the model
 * server's own stream: each chunk's text goes through the blocklist's stream filter (which holds back only the
 * tail a blocked word could still be part of), the id is the gateway's request id and the model the version.
 * The model server is always asked for its usage, so the request log records a streamed answer's whole text
 * and token counts like a whole answer's; the client gets the usage chunk only when it asked
 * (stream_options.include_usage). A client that goes away (mid-stream, or before a whole answer came) aborts
 * the upstream request, which stops the model server's decoding; the request is recorded with status 499.
 */
import { PassThrough } from 'node:stream';
import type { Route } from '@tempered/db';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { GatewayContext, Served } from '../context';
import { HttpError } from '../errors';
import { type ChatTurn, chatTurns, FieldError, lastUserText, normalizePrompt, type StreamFilter } from '../processing';
import { pickRoute, stickyPoint } from '../routing';
import { ChatCompletionResponse, CompletionResponse, errorResponses, openaiRequests } from '../schemas';
import { ClientGone, postJson, postStream, UpstreamError } from '../upstream';

type Kind = 'completion' | 'chat';

interface Upstream {
  choices: Array<{ index?: number; text?: string; message?: { content: string }; finish_reason?: string; logprobs?: unknown; classification?: unknown }>;
  created?: unknown;
  usage?: { prompt_tokens?: unknown; completion_tokens?: unknown };
}

type RequestBody = Record<string, unknown> & { model: string; stream?: boolean | null; stream_options?: { include_usage?: boolean | null } | null };

/** One request to answer, as the handlers read it. */
interface Ask {
  kind: Kind;
  body: RequestBody;
  /** A completion's prompts, normalized (none for a chat). */
  prompts: string[];
  /** A chat's turns, normalized. */
  turns: ChatTurn[] | undefined;
  served: Served;
  clientKey: string;
  /** Calls back (at once, if it is gone already) when the client leaves before the response's end. */
  clientGone: (onGone: () => void) => void;
}

/** A token count as the request log stores it, or null. */
const count = (v: unknown): number | null => (Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : null);

export const completionRoutes: FastifyPluginAsyncZod<{ gw: GatewayContext }> = async (app, { gw }) => {
  const { routes, metrics, blocklist, cfg } = gw;
  const { CompletionRequest, ChatCompletionRequest } = openaiRequests({ maxTokens: cfg.gateway.maxTokens, logprobs: blocklist.size === 0 });

  function noRoute(model: string): HttpError {
    const available = routes.modelNames();
    return new HttpError(
      404,
      `no route for model '${model}': ${available.length ? `available models are ${available.join(', ')}` : 'no model is deployed behind the gateway yet'}`,
      { available_models: available },
      'model',
    );
  }

  /** The route for the request, recorded on `served`, and the body the model server gets. */
  function prepare({ kind, body, prompts, turns, served, clientKey }: Ask) {
    const resolved = routes.resolve(body.model);
    if (!resolved) throw noRoute(body.model);
    const route: Route = resolved.pinned ?? pickRoute(resolved.model, stickyPoint(resolved.model.name, clientKey));
    served.model = route.modelName;
    served.version = route.modelVersionId;
    const record = (served.record = {
      model_name: route.modelName,
      model_version_id: route.modelVersionId,
      kind,
      prompt: turns ? lastUserText(turns) : prompts[0],
      response: null as string | null,
      flagged: false as boolean,
      error: null as string | null,
      prompt_tokens: null as number | null,
      completion_tokens: null as number | null,
      streamed: body.stream === true,
    });
    // Everything but what the gateway rewrites goes upstream as given: the model server refuses what it does not know.
    const upstreamBody: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(body)) if (!['model', 'prompt', 'messages', 'max_completion_tokens'].includes(k)) upstreamBody[k] = v;
    if (kind === 'chat' && body.max_tokens == null && body.max_completion_tokens != null) upstreamBody.max_tokens = body.max_completion_tokens;
    upstreamBody.model = route.modelVersionId;
    // A chat goes upstream as a chat: the model server renders the whole conversation with its chat template.
    if (turns) upstreamBody.messages = turns;
    else upstreamBody.prompt = prompts.length === 1 && typeof body.prompt === 'string' ? prompts[0] : prompts;
    const url = new URL(`${route.endpoint}/v1/${kind === 'chat' ? 'chat/completions' : 'completions'}`);
    return { route, record, upstreamBody, url, labels: { model: route.modelName, version: route.modelVersionId } };
  }

  /** An upstream failure counted against the version and turned into the 502/504 the client gets. */
  function failed(err: UpstreamError, route: Route, labels: { model: string; version: string }, record: { error: string | null }): HttpError {
    metrics.errors.inc({ ...labels, reason: err.reason });
    const message = `the model server of ${route.modelVersionId} (${route.endpoint}) ${err.message}`;
    record.error = message.slice(0, 1000);
    return new HttpError(err.reason === 'upstream_timeout' ? 504 : 502, message);
  }

  /** The model server's refusal (a 4xx: a bad max_tokens, say), passed on: it names the field. */
  function refusal(status: number, body: any, record: { error: string | null }) {
    const message = body?.error?.message ?? `the model server answered HTTP ${status}`;
    record.error = String(message).slice(0, 1000);
    return { status, body: { error: { ...(body?.error ?? {}), message } } };
  }

  /**
   * Routes, calls the model server and filters its answer: the OpenAI body, or the model server's own refusal;
   * undefined when the client went away first (the upstream request is stopped, and recorded as 499).
   */
  async function complete(ask: Ask): Promise<{ status: number; body: any } | undefined> {
    const { kind, served, clientGone } = ask;
    const { route, record, upstreamBody, url, labels } = prepare(ask);
    const t0 = performance.now();
    const leaving = new AbortController();
    clientGone(() => leaving.abort());
    let up: { status: number; body: any };
    try {
      up = await postJson(url, upstreamBody, cfg.gateway.upstreamTimeoutMs, leaving.signal);
      if (up.status >= 500) {
        const message = up.body?.error?.message ?? JSON.stringify(up.body).slice(0, 200);
        throw new UpstreamError('upstream_error', `answered HTTP ${up.status}: ${message}`);
      }
      const textOf = (c: any) => (kind === 'chat' ? c?.message?.content : c?.text);
      if (up.status < 400 && (!Array.isArray(up.body?.choices) || !up.body.choices.every((c: any) => typeof textOf(c) === 'string'))) {
        throw new UpstreamError('upstream_bad_response', `answered without choices[].${kind === 'chat' ? 'message.content' : 'text'}`);
      }
    } catch (err) {
      if (err instanceof ClientGone) {
        served.status = 499;
        record.error = 'the client went away before the answer';
        return undefined;
      }
      if (!(err instanceof UpstreamError)) throw err;
      throw failed(err, route, labels, record);
    } finally {
      metrics.upstreamLatency.observe(labels, (performance.now() - t0) / 1000);
    }
    if (up.status >= 400) return refusal(up.status, up.body, record);

    let flagged = false;
    const choices = (up.body as Upstream).choices.map((c, i) => {
      const out = blocklist.filter(kind === 'chat' ? c.message!.content : c.text!);
      flagged ||= out.flagged;
      const finish_reason = out.flagged ? 'content_filter' : (c.finish_reason ?? null);
      // A classifier's answer is a label: its probabilities come along (tempered_trainer classifier.py).
      const classification = c.classification ? { classification: c.classification } : {};
      return kind === 'completion'
        ? { index: c.index ?? i, text: out.text, logprobs: c.logprobs ?? null, finish_reason, ...classification }
        : { index: c.index ?? i, message: { role: 'assistant' as const, content: out.text }, logprobs: c.logprobs ?? null, finish_reason, ...classification };
    });
    if (flagged) metrics.flagged.inc(labels);
    record.response = kind === 'completion' ? (choices[0] as { text: string }).text : (choices[0] as { message: { content: string } }).message.content;
    record.flagged = flagged;
    const usage = (up.body as Upstream).usage;
    record.prompt_tokens = count(usage?.prompt_tokens);
    record.completion_tokens = count(usage?.completion_tokens);
    return {
      status: 200,
      body: {
        object: kind === 'completion' ? 'text_completion' : 'chat.completion',
        created: typeof up.body.created === 'number' ? up.body.created : Math.floor(Date.now() / 1000),
        model: route.modelVersionId,
        choices,
        usage,
        tempered: { model: route.modelName, model_version: route.modelVersionId, flagged },
      },
    };
  }

  /**
   * The streamed answer: resolves with the JSON refusal when the model server refused, else with the event
   * stream the client gets, relayed from the model server's as its chunks come.
   */
  async function completeStream(ask: Ask, requestId: string, settle: () => void): Promise<{ status: number; body: any } | { stream: PassThrough }> {
    const { kind, body, served, clientGone } = ask;
    const { route, record, upstreamBody, url, labels } = prepare(ask);
    // The usage is always asked for: the request log records it. The client gets it only if it asked.
    const wantsUsage = body.stream_options?.include_usage === true;
    upstreamBody.stream_options = { include_usage: true };
    const t0 = performance.now();
    let up;
    try {
      up = await postStream(url, upstreamBody, cfg.gateway.upstreamTimeoutMs);
      if (up.status >= 500) {
        const message = up.body?.error?.message ?? JSON.stringify(up.body).slice(0, 200);
        throw new UpstreamError('upstream_error', `answered HTTP ${up.status}: ${message}`);
      }
      if (up.status < 400 && !up.events) throw new UpstreamError('upstream_bad_response', 'answered a streaming request without an event stream');
    } catch (err) {
      metrics.upstreamLatency.observe(labels, (performance.now() - t0) / 1000);
      if (!(err instanceof UpstreamError)) throw err;
      throw failed(err, route, labels, record);
    }
    if (up.status >= 400 || !up.events) return refusal(up.status, up.body, record);

    const upstream = up;
    const out = new PassThrough();
    out.on('error', () => {}); // Fastify destroys it when the client leaves; nothing more is written then
    let finished = false;
    clientGone(() => {
      if (finished) return;
      finished = true;
      upstream.abort(); // the model server sees its socket close and stops decoding
      served.status = 499;
      record.error = 'the client closed the stream before its end';
    });
    const send = (chunk: unknown) => out.write(`data: ${JSON.stringify(chunk)}\n\n`);
    const filters = new Map<number, StreamFilter>();
    const texts = new Map<number, string>();
    const filterOf = (i: number) => filters.get(i) ?? filters.set(i, blocklist.stream()).get(i)!;
    void (async () => {
      let flagged = false;
      try {
        for await (const data of upstream.events!) {
          if (finished) break;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new UpstreamError('upstream_error', `sent an error in its stream: ${chunk.error.message ?? JSON.stringify(chunk.error)}`);
          chunk.id = requestId;
          chunk.model = route.modelVersionId;
          if (chunk.usage) {
            record.prompt_tokens = count(chunk.usage.prompt_tokens);
            record.completion_tokens = count(chunk.usage.completion_tokens);
          }
          if (!wantsUsage) {
            delete chunk.usage;
            if (Array.isArray(chunk.choices) && chunk.choices.length === 0) continue; // the usage chunk
          }
          for (const c of chunk.choices ?? []) {
            const f = filterOf(c.index);
            const said = kind === 'chat' ? c.delta?.content : c.text;
            let piece = typeof said === 'string' ? f.push(said) : '';
            if (c.finish_reason) {
              piece += f.end();
              if (f.flagged) {
                c.finish_reason = 'content_filter';
                flagged = true;
              }
            }
            texts.set(c.index, (texts.get(c.index) ?? '') + piece);
            if (kind === 'chat') {
              if (c.finish_reason && piece) {
                // The held-back rest goes in a chunk of its own: OpenAI's last chunk has an empty delta.
                send({ ...chunk, choices: [{ ...c, delta: { content: piece }, finish_reason: null }] });
                piece = '';
              }
              if (typeof said === 'string') c.delta.content = piece;
            } else c.text = piece;
          }
          // A chunk whose text the filter holds back entirely is not sent (an empty piece tells the client nothing).
          chunk.choices = (chunk.choices ?? []).filter((c: any) => c.finish_reason || c.logprobs || (kind === 'chat' ? c.delta?.role || c.delta?.content : c.text));
          if (chunk.choices.length === 0 && !chunk.usage) continue;
          send(chunk);
        }
        if (!finished) out.write('data: [DONE]\n\n');
      } catch (err) {
        if (!finished) {
          const e = err instanceof UpstreamError ? err : new UpstreamError('upstream_bad_response', `sent a chunk that is not JSON: ${(err as Error).message}`);
          const { message } = failed(e, route, labels, record);
          served.status = 502;
          // Headers are out: the failure goes as an error event, as OpenAI sends one.
          send({ error: { message, type: 'upstream_error', param: null, code: 502 } });
        }
      } finally {
        metrics.upstreamLatency.observe(labels, (performance.now() - t0) / 1000);
        if (flagged) metrics.flagged.inc(labels);
        record.flagged = flagged;
        record.response = texts.get(0) ?? (served.status === undefined ? '' : null);
        const gone = served.status === 499;
        finished = true;
        out.end();
        if (gone) settle(); // no 'finish' comes for a response the client left
      }
    })();
    return { stream: out };
  }

  app.post(
    '/v1/completions',
    {
      schema: {
        summary: 'Complete a prompt, or a list of prompts (OpenAI completions)',
        description: 'Fields other than model and prompt go to the model server as given. With stream: true, server-sent events in OpenAI\'s chunk format.',
        body: CompletionRequest,
        response: { 200: CompletionResponse, ...errorResponses },
      },
    },
    async (req, reply) => {
      const raw = typeof req.body.prompt === 'string' ? [req.body.prompt] : req.body.prompt;
      const prompts = raw.map((p, i) => {
        const prompt = normalizePrompt(p);
        if (prompt === '') throw new FieldError(typeof req.body.prompt === 'string' ? 'prompt' : `prompt[${i}]`, 'is empty once normalized');
        return prompt;
      });
      return answer(req, reply, 'completion', prompts, undefined);
    },
  );

  app.post(
    '/v1/chat/completions',
    {
      schema: {
        summary: 'Answer a conversation (OpenAI chat completions)',
        description: 'The whole conversation goes upstream, every turn normalized, rendered by the model server with the model\'s chat template. With stream: true, server-sent events in OpenAI\'s chunk format.',
        body: ChatCompletionRequest,
        response: { 200: ChatCompletionResponse, ...errorResponses },
      },
    },
    async (req, reply) => answer(req, reply, 'chat', [], chatTurns(req.body.messages)),
  );

  async function answer(req: FastifyRequest, reply: FastifyReply, kind: Kind, prompts: string[], turns: ChatTurn[] | undefined) {
    const body = req.body as RequestBody;
    const clientKey = (req.headers['x-client-key'] as string | undefined) || (typeof body.user === 'string' && body.user) || (req.socket.remoteAddress ?? '');
    // The client may leave while the model server is still starting its answer: then it is gone already.
    const clientGone = (onGone: () => void) => {
      if (req.raw.socket.destroyed) onGone();
      else reply.raw.on('close', () => !reply.raw.writableFinished && onGone());
    };
    if (body.stream !== true) {
      const out = await complete({ kind, body, prompts, turns, served: req.served, clientKey, clientGone });
      if (out) return reply.code(out.status).send({ id: req.id, ...out.body });
      gw.settle(req, reply); // no 'finish' comes for a response the client left
      return reply.hijack(); // nothing to send to nobody
    }
    const out = await completeStream({ kind, body, prompts, turns, served: req.served, clientKey, clientGone }, req.id, () => gw.settle(req, reply));
    if (!('stream' in out)) return reply.code(out.status).send({ id: req.id, ...out.body });
    return reply.code(200).header('content-type', 'text/event-stream').header('cache-control', 'no-cache').header('x-accel-buffering', 'no').send(out.stream);
  }
};
