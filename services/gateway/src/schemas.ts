/**
 * The gateway's HTTP contract as zod schemas: what each route accepts (validated by Fastify before a handler
 * runs; a failure is a 400 naming the field, see errors.ts) and what the gateway itself answers (checked as
 * it is sent). The OpenAPI document at /openapi.json is generated from these.
 *
 * The request schemas check shape, and the sampling numbers against OpenAI's own ranges (temperature 0..2,
 * top_p 0..1, penalties -2..2, whole token counts): a number a model server would fail on (a temperature of
 * 1e-320 divides its logits into infinities) is the client's mistake, a 400 here, not a 502 counted against
 * the model version. `max_tokens` is bounded by the gateway's config (TEMPERED_GATEWAY_MAX_TOKENS), `stop`, `n`
 * and prompt lists by OpenAI's own limits. OpenAI parameters that nothing behind the gateway implements
 * (tools, echo, suffix, logit_bias, best_of other than n, a response_format other than text, ...) are
 * refused here, naming the parameter, never silently dropped. Other fields meant for the model server pass
 * through unchecked, and its refusal is passed on. Rules on content (a prompt empty once normalized, a system message only first, ...) are checked
 * by processing.ts, which normalizes the text; body.ts bounds the nesting and refuses lone surrogates.
 */
import { z } from 'zod';

/** Longest feedback comment, in characters. */
export const MAX_COMMENT = 4000;
/** Longest request body, in bytes (413 beyond). */
export const MAX_BODY = 1024 * 1024;
/**
 * Deepest nesting of arrays and objects in a request body (400 beyond). OpenAI's requests nest a handful of
 * levels; the model server's json.loads fails near 1,000 and the gateway's own JSON.stringify near 10,000.
 */
export const MAX_JSON_DEPTH = 64;
/**
 * Smallest temperature above 0 (greedy). OpenAI accepts 0..2; below this, sampling is greedy in all but name,
 * and a denormal such as 1e-320 is 0 in the model's float32, so logits / temperature are infinities.
 */
export const MIN_TEMPERATURE = 1e-6;

/** Said of `model` when it is missing; errors.ts adds the models deployed now. */
export const MODEL_FIELD_MESSAGE = 'must be a model name or a model version id';

const modelField = z
  .string({ error: MODEL_FIELD_MESSAGE })
  .min(1, { error: MODEL_FIELD_MESSAGE })
  .describe('A model name (traffic split between its versions by weight, sticky per client) or a model version id (pinned to it).');

const chatMessage = z.object(
  {
    role: z.enum(['system', 'user', 'assistant'], { error: 'must be one of system, user, assistant' }),
    content: z
      .union([z.string(), z.array(z.unknown().describe('A content part: {type: "text", text} parts are joined by newlines, others are ignored.'))], {
        error: 'must be a string or an array of content parts',
      })
      .describe('The text, or content parts.'),
  },
  { error: 'must be a message {role, content}' },
);

/** A whole number (a safe integer) of at least `min` and at most `max`, or null. */
const whole = (what: string, min: number, max?: number) => {
  const range = max === undefined ? `>= ${min}` : `from ${min} to ${max}`;
  const said = `must be a whole number ${range}`;
  const int = z.int({ error: said }).min(min, { error: said });
  return (max === undefined ? int : int.max(max, { error: said })).nullish().describe(`${what}, a whole number ${range}.`);
};

/** A finite number in [min, max] (null as OpenAI allows: the model server's default), forwarded as given. */
const inRange = (min: number, max: number, what: string) => {
  const said = `must be a number from ${min} to ${max}`;
  return z.number({ error: said }).min(min, { error: said }).max(max, { error: said }).nullish().describe(`${what}, ${min} to ${max}.`);
};

const temperatureSaid = `must be 0 (greedy) or a number from ${MIN_TEMPERATURE} to 2`;
const temperatureField = z
  .number({ error: temperatureSaid })
  .min(0, { error: temperatureSaid })
  .max(2, { error: temperatureSaid })
  .refine((t) => t === 0 || t >= MIN_TEMPERATURE, { error: temperatureSaid })
  .nullish()
  .describe(`Sampling temperature: 0 (greedy) or ${MIN_TEMPERATURE} to 2 (OpenAI's range is 0 to 2).`);

/** Most stop strings in a request, as OpenAI allows. */
export const MAX_STOPS = 4;
/** Most prompts in one completion request. */
export const MAX_PROMPTS = 128;
/** Most choices per prompt, as OpenAI allows. */
export const MAX_N = 128;

const stopSaid = `must be a non-empty string or a list of 1 to ${MAX_STOPS} non-empty strings`;
const stopField = z
  .union([z.string().min(1), z.array(z.string().min(1)).min(1).max(MAX_STOPS)], { error: stopSaid })
  .nullish()
  .describe(`Stop sequences (up to ${MAX_STOPS}): the text is cut before the first one found, with finish_reason "stop".`);

const streamField = z
  .boolean({ error: 'must be true or false' })
  .nullish()
  .describe('Answer as server-sent events in OpenAI\'s chunk format, ended by `data: [DONE]`.');

const streamOptionsField = z
  .object({ include_usage: z.boolean({ error: 'must be true or false' }).nullish() }, { error: 'must be {include_usage: true|false}' })
  .strict()
  .nullish()
  .describe('With stream: include_usage adds a last chunk with the usage and no choices (every chunk then has usage: null).');

/**
 * OpenAI parameters the gateway and its model servers do not implement. Each is refused with a 400 naming it
 * (never silently ignored) unless its value asks for nothing: null, false, 0, an empty string, list or object.
 * best_of equal to n and response_format {type: "text"} ask for nothing either (checked on the whole body).
 */
const REFUSED = {
  echo: 'echoing the prompt is not supported',
  suffix: 'insertion (suffix) is not supported',
  logit_bias: 'logit_bias is not supported',
  tools: 'tools are not supported',
  tool_choice: 'tools are not supported',
  functions: 'functions are not supported',
  function_call: 'functions are not supported',
  parallel_tool_calls: 'tools are not supported',
  audio: 'audio output is not supported',
  modalities: 'only text output is supported',
  prediction: 'predicted outputs are not supported',
} as const;

const asksNothing = (v: unknown) =>
  v === undefined || v === null || v === false || v === 0 || v === '' || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0);

const refusedFields = (names: ReadonlyArray<keyof typeof REFUSED>) =>
  Object.fromEntries(names.map((k) => [k, z.unknown().refine(asksNothing, { error: `${REFUSED[k]}; leave it out` }).optional().describe(`Not supported: refused unless it asks for nothing.`)]));

const bestOfField = z.unknown().optional().describe('Only best_of equal to n (or left out) is accepted: choosing the best of several is not supported.');
const responseFormatField = z.unknown().optional().describe('Only {"type": "text"} (or left out) is accepted.');

const userField = z.unknown().optional().describe('The end user; when a string and no x-client-key header is sent, the key that keeps a client on one version.');

/** The rules a request checks with the whole body in view: stream_options needs stream, best_of must equal n, the format is text. */
function wholeBody(body: Record<string, unknown>, ctx: z.RefinementCtx): void {
  if (body.top_logprobs !== undefined && body.top_logprobs !== null && body.logprobs !== true && 'messages' in body) {
    ctx.addIssue({ code: 'custom', path: ['top_logprobs'], message: 'needs logprobs: true' });
  }
  if (!asksNothing(body.stream_options) && body.stream !== true) {
    ctx.addIssue({ code: 'custom', path: ['stream_options'], message: 'is only allowed with stream: true' });
  }
  if (body.best_of !== undefined && body.best_of !== null && body.best_of !== (body.n ?? 1)) {
    ctx.addIssue({ code: 'custom', path: ['best_of'], message: 'choosing the best of several is not supported; leave best_of out or make it equal to n' });
  }
  const format = body.response_format as { type?: unknown } | null | undefined;
  if (format !== undefined && format !== null && !(typeof format === 'object' && format.type === 'text' && Object.keys(format).length === 1)) {
    ctx.addIssue({ code: 'custom', path: ['response_format'], message: 'only {"type": "text"} is supported' });
  }
}

/** What the requests are bounded by, from the gateway's config. */
export interface RequestLimits {
  /** The most tokens one request may ask for (TEMPERED_GATEWAY_MAX_TOKENS). */
  maxTokens: number;
  /**
   * Whether log probabilities may be asked for: not behind a blocklist, since each token's text (and its
   * likeliest alternatives) would show the words the filter replaced.
   */
  logprobs: boolean;
}

/** Most alternatives per token: completions' logprobs, chats' top_logprobs (OpenAI's limits). */
export const MAX_LOGPROBS = { completion: 5, chat: 20 } as const;

const NO_LOGPROBS = 'log probabilities are not given by this gateway: its blocklist filters the output, which they would reveal';

/**
 * The OpenAI request schemas, bounded by the gateway's config. Completions forward fields other than model and
 * prompt to the model server as given, chats those other than model and messages (which is refused there when
 * it does not know them); the ones both know not to support are refused here first.
 */
export function openaiRequests(limits: RequestLimits) {
  /** The sampling fields both OpenAI calls share, checked against OpenAI's ranges and forwarded to the model server. */
  const sampling = {
    max_tokens: whole('Most tokens to generate', 1, limits.maxTokens),
    temperature: temperatureField,
    top_p: inRange(0, 1, 'Nucleus sampling'),
    n: whole('Choices to generate per prompt (each sampled; greedy gives n identical ones)', 1, MAX_N),
    stop: stopField,
    seed: z.int({ error: 'must be a whole number' }).nullish().describe('Sampling seed, a whole number: the same seed and request give the same answer.'),
    presence_penalty: inRange(-2, 2, 'Presence penalty'),
    frequency_penalty: inRange(-2, 2, 'Frequency penalty'),
    stream: streamField,
    stream_options: streamOptionsField,
    best_of: bestOfField,
    response_format: responseFormatField,
    user: userField,
  };
  const noLogprobs = z.unknown().refine(asksNothing, { error: NO_LOGPROBS }).optional().describe(NO_LOGPROBS);
  const completionLogprobs = limits.logprobs
    ? whole("Log probabilities of each returned token and of its likeliest alternatives (this many), the model's own", 0, MAX_LOGPROBS.completion)
    : noLogprobs;
  const chatLogprobs = limits.logprobs
    ? z.boolean({ error: 'must be true or false' }).nullish().describe("Log probabilities of each returned token, the model's own.")
    : noLogprobs;
  const topLogprobs = limits.logprobs ? whole('With logprobs: true, the likeliest alternatives per token', 0, MAX_LOGPROBS.chat) : noLogprobs;
  const promptSaid = `must be a string or a list of 1 to ${MAX_PROMPTS} strings`;
  const CompletionRequest = z
    .looseObject({
      model: modelField,
      prompt: z
        .union([z.string(), z.array(z.string()).min(1).max(MAX_PROMPTS)], { error: promptSaid })
        .describe(`The prompt, or a list of up to ${MAX_PROMPTS} (choices indexed prompt-major: prompt i's choice j is index i * n + j), each normalized like training data (NFKC, control characters, whitespace) before it goes upstream.`),
      ...sampling,
      logprobs: completionLogprobs,
      ...refusedFields(['echo', 'suffix', 'logit_bias']),
    })
    .superRefine(wholeBody)
    .describe('An OpenAI completion request. Fields other than model and prompt go to the model server as given.');

  const ChatCompletionRequest = z
    .looseObject({
      model: modelField,
      messages: z
        .array(chatMessage, { error: 'must be a non-empty array of {role, content}' })
        .min(1, { error: 'must be a non-empty array of {role, content}' })
        .describe('The conversation: a system message only first, at least one non-empty user message, ending with one to answer.'),
      ...sampling,
      max_completion_tokens: whole('Most tokens to generate, when max_tokens is not given', 1, limits.maxTokens),
      logprobs: chatLogprobs,
      top_logprobs: topLogprobs,
      ...refusedFields(['logit_bias', 'tools', 'tool_choice', 'functions', 'function_call', 'parallel_tool_calls', 'audio', 'modalities', 'prediction']),
    })
    .superRefine(wholeBody)
    .describe('An OpenAI chat request: the whole conversation goes upstream, every turn normalized. Other fields go to the model server as given.');
  return { CompletionRequest, ChatCompletionRequest };
}

const optionalText = (max: number) =>
  z
    .string({ error: 'must be a string' })
    .max(max, { error: `must be at most ${max} characters` })
    .nullish();

const requestId = (what: string) =>
  z
    .string({ error: 'must be the id of a gateway response (its x-request-id header or body id)' })
    .min(1, { error: 'must be the id of a gateway response (its x-request-id header or body id)' })
    .describe(what);

export const FeedbackRequest = z.object({
  rating: z.enum(['up', 'down'], { error: 'must be "up" or "down"' }),
  comment: optionalText(MAX_COMMENT),
  request_id: requestId('The served request rated: its x-request-id header or body id.'),
});

const requiredText = z
  .string({ error: 'must be a non-empty string' })
  .max(MAX_BODY, { error: 'is too long' })
  .refine((v) => v.trim() !== '', { error: 'must be a non-empty string' });

export const PairwiseFeedbackRequest = z.object({
  prompt: requiredText.describe('The prompt both responses answer (normalized as served prompts are).'),
  response_a: requiredText.describe('The first response, as the client saw it.'),
  response_b: requiredText.describe('The second response, as the client saw it.'),
  preferred: z.enum(['a', 'b', 'tie'], { error: 'must be "a", "b" or "tie"' }),
  comment: optionalText(MAX_COMMENT),
  model: optionalText(200).describe('The model name; taken from the served requests when not given.'),
  request_ids: z
    .tuple([requestId('The request that answered response_a').nullable(), requestId('The request that answered response_b').nullable()], {
      error: 'must be two request ids: the one that answered response_a, then response_b (null for one not served here)',
    })
    .nullish(),
});

// ---- Responses ----

export const ErrorBody = z
  .looseObject({
    id: z.string().optional().describe('The request id (also the x-request-id header).'),
    error: z.looseObject({
      message: z.string(),
      type: z.string().nullish(),
      param: z.string().nullish().describe('The offending field, for a 400.'),
      code: z.union([z.number(), z.string()]).nullish(),
    }),
    available_models: z.array(z.string()).optional().describe('With a 404 for an unknown model: the models deployed now.'),
  })
  .describe("OpenAI's error shape. A model server's own refusal is passed on with its status and fields.");

const tempered = z.object({
  model: z.string().describe('The model name.'),
  model_version: z.string().describe('The version that answered.'),
  flagged: z.boolean().describe('Whether the blocklist replaced something in the output.'),
});

const finishReason = z.string().nullable().describe('"content_filter" when the blocklist replaced something.');
/** A classifier's answer (model.type tfidf-logreg): the label it answered, and every label's probability. */
const classification = z
  .object({ label: z.string(), score: z.number(), scores: z.record(z.string(), z.number()) })
  .optional()
  .describe("A classifier's answer (model.type tfidf-logreg): the label, its probability, and every label's.");

export const CompletionResponse = z.object({
  id: z.string(),
  object: z.literal('text_completion'),
  created: z.number(),
  model: z.string().describe('The model version id that answered.'),
  choices: z.array(z.object({ index: z.number(), text: z.string(), logprobs: z.unknown().nullable(), finish_reason: finishReason, classification })),
  usage: z.unknown().optional().describe("The model server's token counts."),
  tempered,
});

export const ChatCompletionResponse = z.object({
  id: z.string(),
  object: z.literal('chat.completion'),
  created: z.number(),
  model: z.string().describe('The model version id that answered.'),
  choices: z.array(
    z.object({
      index: z.number(),
      message: z.object({ role: z.literal('assistant'), content: z.string() }),
      logprobs: z.unknown().nullable().describe('With logprobs: true, {content: [{token, logprob, bytes, top_logprobs}]}.'),
      finish_reason: finishReason,
      classification,
    }),
  ),
  usage: z.unknown().optional().describe("The model server's token counts."),
  tempered,
});

export const ModelList = z.object({
  object: z.literal('list'),
  data: z.array(
    z.object({
      id: z.string().describe('A model name, or one of its version ids.'),
      object: z.literal('model'),
      created: z.number().int(),
      owned_by: z.string(),
      versions: z
        .array(z.object({ id: z.string(), weight: z.number(), share: z.number() }))
        .optional()
        .describe("A model name's versions, with their routing weights and share of traffic."),
      parent: z.string().optional().describe("A version's model name."),
      weight: z.number().optional().describe("A version's routing weight."),
    }),
  ),
});

const timestamp = z.iso.datetime().describe('When it was stored.');

export const FeedbackResponse = z.object({
  id: z.number().int(),
  request_id: z.string(),
  model: z.string(),
  model_version: z.string(),
  rating: z.enum(['up', 'down']),
  created_at: timestamp,
});

export const PairwiseFeedbackResponse = z.object({
  id: z.number().int(),
  model: z.string().nullable(),
  preferred: z.enum(['a', 'b', 'tie']),
  created_at: timestamp,
});

export const Health = z.object({ status: z.literal('ok'), models: z.number().int().describe('Model names routable now.') });

/** The error answers every OpenAI route may give. */
export const errorResponses = { '4xx': ErrorBody, '5xx': ErrorBody } as const;
