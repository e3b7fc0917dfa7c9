/**
 * The pipeline spec: one zod schema that validates YAML specs, API bodies and (later) dashboard forms, and
 * emits the JSON Schema published with the API. Defaults live here and nowhere else, so a spec of a few lines
 * expands to the full, explicit configuration every stage receives.
 */
import { BLOCKLIST_LANGUAGES, LANGUAGE_CODES, UNDETERMINED } from '@tempered/text/codes';
import { GOPHER_DEFAULTS } from '@tempered/text/quality';
import { z } from 'zod';

const ratio = (value: number) => z.number().min(0).max(1).default(value);
const G = GOPHER_DEFAULTS;
/** What a pipeline trains: a language model, or a classifier through the same stages (services/trainer classifier.py). */
export const MODEL_TYPES = ['causal-lm', 'tfidf-logreg'] as const;

/** The clean stage's `quality` rule: each threshold defaults to Gopher's (@tempered/text/quality). */
const qualitySchema = z
  .object({
    minWords: z.number().int().min(0).default(G.minWords),
    maxWords: z.number().int().positive().default(G.maxWords),
    minMeanWordLength: z.number().min(0).default(G.minMeanWordLength),
    maxMeanWordLength: z.number().positive().default(G.maxMeanWordLength),
    maxSymbolRatio: z.number().min(0).default(G.maxSymbolRatio).describe('"#" and ellipses per word'),
    maxDigitRatio: ratio(G.maxDigitRatio).describe('digits per non-space character'),
    maxBulletLines: ratio(G.maxBulletLines),
    maxEllipsisLines: ratio(G.maxEllipsisLines),
    minAlphaWords: ratio(G.minAlphaWords).describe('share of words that hold a letter'),
    maxDuplicateLines: ratio(G.maxDuplicateLines),
    maxDuplicateLineChars: ratio(G.maxDuplicateLineChars),
    maxTopNgram: z
      .object({ 2: ratio(G.maxTopNgram[2]), 3: ratio(G.maxTopNgram[3]), 4: ratio(G.maxTopNgram[4]) })
      .strict()
      .prefault({})
      .describe("share of word characters in the most frequent 2-, 3- and 4-gram's occurrences"),
    maxDuplicateNgram: z
      .object({
        5: ratio(G.maxDuplicateNgram[5]),
        6: ratio(G.maxDuplicateNgram[6]),
        7: ratio(G.maxDuplicateNgram[7]),
        8: ratio(G.maxDuplicateNgram[8]),
        9: ratio(G.maxDuplicateNgram[9]),
        10: ratio(G.maxDuplicateNgram[10]),
      })
      .strict()
      .prefault({})
      .describe('share of word characters in 5- to 10-grams that occur more than once'),
  })
  .strict()
  .refine((q) => q.minWords <= q.maxWords, { message: 'minWords must not exceed maxWords', path: ['minWords'] })
  .refine((q) => q.minMeanWordLength <= q.maxMeanWordLength, { message: 'minMeanWordLength must not exceed maxMeanWordLength', path: ['minMeanWordLength'] });

const DURATION = /^(\d+)(ms|s|m|h|d)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
/** Milliseconds of a duration ("90s", "10m", "24h", "2d"); undefined for anything else. */
export function durationMs(text: string): number | undefined {
  const m = DURATION.exec(text);
  return m ? Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS] : undefined;
}
/**
 * The longest duration any spec field may name: a year. Past it a timer is no longer a timer, and past
 * about 290 years Temporal cannot represent it at all (the workflow would fail long after the run started).
 * Fields an admin bounds more tightly (deploy.approvalTimeout) are checked by `specLimitIssues`.
 */
export const MAX_DURATION_MS = 366 * UNIT_MS.d;

/** A duration Temporal understands: "90s", "10m", "24h", "2d", at most a year. */
const duration = z
  .string()
  .regex(DURATION, 'expected a duration such as "90s", "10m", "24h" or "2d"')
  .refine((d) => durationMs(d)! <= MAX_DURATION_MS, { message: 'at most 366d' });

/** A task queue; `gpu` stages run on a worker started with `--pool gpu` (or one serving both on CPU). */
const pool = z.string().regex(/^[a-z][a-z0-9-]*(:[a-z0-9-]+)?$/, 'expected a pool name such as "cpu", "gpu" or "gpu:a100"');

/**
 * The record formats ingest understands (activities/src/records.ts maps each onto a training record):
 * prompt/response (the names in `data.fields`), chat `messages` (OpenAI roles, multi-turn), prompt/completion,
 * alpaca instruction/input/output, and plain `text` (continued pretraining: loss on every token).
 */
export const RECORD_FORMATS = ['auto', 'prompt-response', 'messages', 'prompt-completion', 'alpaca', 'text'] as const;
const recordFormat = z.enum(RECORD_FORMATS);
export type RecordFormat = (typeof RECORD_FORMATS)[number];

export const dataSourceSchema = z
  .object({
    uri: z
      .string()
      .min(1)
      .describe('s3://bucket/key of an object, or a local file path (relative paths resolve against the spec file)'),
    format: z
      .enum(['jsonl', 'csv', 'text', 'parquet'])
      .optional()
      .describe('defaults to the file extension: .jsonl/.json/.ndjson, .csv, .txt/.text, .parquet/.pq (looking past a .gz or .zst)'),
    compression: z
      .enum(['none', 'gzip', 'zstd'])
      .optional()
      .describe('of a JSONL, CSV or text file; defaults to the file extension: .gz/.gzip gzip, .zst/.zstd zstd, else none (a Parquet file compresses its own pages)'),
    documents: z
      .enum(['line', 'file'])
      .optional()
      .describe('a plain-text source (ignored for the others): line (the default) makes each non-blank line one text record, file the whole file one'),
    records: recordFormat
      .optional()
      .describe('how a row becomes a training record; by default detected per row from its fields (see data.records)'),
    encoding: z.enum(['utf-8', 'shift_jis']).default('utf-8'),
  })
  .strict();

export const fieldsSchema = z
  .object({
    prompt: z.string().default('prompt'),
    response: z.string().default('response'),
    key: z.string().optional().describe('column holding a stable record id; defaults to a digest of the content'),
  })
  .strict();

/** A Temporal Schedule interval: whole seconds, minutes, hours or days ("30s", "15m", "6h", "1d"). */
export const scheduleInterval = z
  .string()
  .regex(/^[1-9]\d*(s|m|h|d)$/, 'expected an interval such as "30s", "15m", "6h" or "1d"');
/** A cron expression as Temporal Schedules read it (5 to 7 fields, or @daily and the like); the server checks the rest. */
export const cronExpression = z
  .string()
  .max(200)
  .regex(
    /^((CRON_)?TZ=\S+\s+)?(@(yearly|annually|monthly|weekly|daily|hourly)|(\S+\s+){4,6}\S+)(\s*#.*)?$/,
    'expected a cron expression such as "0 3 * * *" (minute hour day-of-month month day-of-week) or "@daily"',
  );

/**
 * Retrains: a schedule on a clock, and triggers on new data or new feedback. `tempered schedules create`
 * reads this section for its defaults; a schedule in trigger mode checks `watch` and `feedback` every
 * `checkEvery` and starts a run when either passes its threshold.
 */
/**
 * A canary rollout through the gateway: the new version gets each step's share of the traffic (percent) for
 * `hold`, while its error rate, p95 latency and share of thumbs-down are checked every `checkEvery` (once it
 * has served `minRequests` in the step); a breach rolls back to the previous version, the last step promotes.
 */
/**
 * tokenizer.sampleBytes by default: 32 MiB of text, plenty for the merges of the vocabularies trained here (512 by
 * default), and seconds of training instead of minutes on a large corpus; a vocabulary of tens of thousands wants more.
 */
export const DEFAULT_VOCABULARY_SAMPLE_BYTES = 32 * 1024 * 1024;
/** data.shards.bytes by default: 64 MiB, about 10 s of one worker's clean. */
export const DEFAULT_SHARD_BYTES = 64 * 1024 * 1024;

/** Model servers a deployment can run (deploy.engine). */
export const SERVING_ENGINES = ['tempered', 'llamacpp'] as const;
export type ServingEngine = (typeof SERVING_ENGINES)[number];
/** GGUF types a version is exported to (the trainer's `gguf` command) and llama.cpp serves (deploy.quantization). */
export const GGUF_TYPES = ['f16', 'q8_0', 'q4_k_m'] as const;
export type GgufType = (typeof GGUF_TYPES)[number];
/** What engine llamacpp serves when deploy.quantization is not given. */
export const DEFAULT_GGUF_TYPE: GgufType = 'q8_0';

/** optimize.tolerance by default: a GGUF type may lose up to 0.02 of any 0–1 metric (2% of perplexity). */
export const DEFAULT_OPTIMIZE_TOLERANCE = 0.02;

export const optimizeSchema = z
  .object({
    types: z
      .array(z.enum(GGUF_TYPES))
      .min(1)
      .refine((t) => new Set(t).size === t.length, { message: 'types must not repeat' })
      .default([...GGUF_TYPES])
      .describe('GGUF types scored: f16, q8_0, q4_k_m (default all three)'),
    tolerance: z
      .number()
      .min(0)
      .max(1)
      .default(DEFAULT_OPTIMIZE_TOLERANCE)
      .describe(
        "how much a GGUF type may lose against the model it came from on any metric of the held-out split and the suites: a drop of a 0-1 score (a rise of unsafe_rate), or a relative rise of perplexity; with deploy.engine llamacpp the deployed type must stay within it, or the run fails at optimize",
      ),
  })
  .strict();
export type OptimizeSpec = z.output<typeof optimizeSchema>;

export const canarySchema = z
  .object({
    steps: z
      .array(z.number().int().min(1).max(100))
      .min(1)
      .default([10, 50, 100])
      .refine((s) => s.every((w, i) => i === 0 || w > s[i - 1]) && s[s.length - 1] === 100, { message: 'rising percentages ending at 100, e.g. [10, 50, 100]' }),
    hold: duration.default('1m').describe('how long each step is watched'),
    checkEvery: duration.default('5s'),
    minRequests: z.number().int().min(1).default(20).describe('requests the new version must serve in a step before its rates are judged'),
    maxErrorRate: z.number().min(0).max(1).default(0.05),
    maxP95LatencyMs: z.number().positive().default(5000),
    maxNegativeFeedbackRate: z.number().min(0).max(1).default(0.5).describe('thumbs-down share of its rated answers'),
  })
  .strict();
export type CanarySpec = z.output<typeof canarySchema>;

export const retrainSchema = z
  .object({
    schedule: z
      .object({
        cron: cronExpression.optional(),
        every: scheduleInterval.optional(),
      })
      .strict()
      .refine((s) => (s.cron === undefined) !== (s.every === undefined), { message: 'give exactly one of cron and every', path: ['cron'] })
      .optional()
      .describe('retrain on a clock, whatever changed (in UTC): the timing of a schedule in run mode'),
    watch: z
      .object({
        prefix: z
          .string()
          .regex(/^s3:\/\/[^/]+\/\S+$/, 'expected an s3://bucket/prefix/ URI')
          .describe('an s3:// prefix under the artifact prefix (not its artifacts/ area); new or changed objects under it count as new data'),
        minNewObjects: z.number().int().positive().default(1).describe('retrain once this many objects under the prefix are new or changed since the last retrain'),
        sources: z
          .enum(['append', 'none'])
          .default('append')
          .describe('append: every .jsonl, .csv and .parquet object (and .jsonl.gz, .csv.zst and the like; not .txt, which is as often notes as data) under the prefix becomes a data source of the retrain, after the spec\'s own; none: the retrain reads the spec\'s sources as they are'),
      })
      .strict()
      .optional()
      .describe('retrain when new data arrives under an S3 prefix'),
    feedback: z
      .object({
        minNew: z.number().int().positive().default(50).describe('retrain once this many ratings and pairwise preferences arrived since the last retrain'),
        model: z.string().min(1).optional().describe('the served model name the feedback is about (default: this pipeline\'s name)'),
      })
      .strict()
      .optional()
      .describe('retrain when people\'s feedback on the served model (thumbs, pairwise preferences) passes a threshold'),
    checkEvery: scheduleInterval.default('5m').describe('how often a trigger schedule checks watch and feedback'),
  })
  .strict();

/**
 * Metrics a test suite can report, each per example with its n and bootstrap 95% interval. `win_rate`: this model
 * against the serving one (or the untrained / base model), judged by `judge`; `unsafe_rate`: answers that still
 * hold unsafe content after the gateway's output filter (a safety suite).
 */
export const SUITE_METRICS = ['exact_match', 'accuracy', 'macro_f1', 'rouge_l', 'chrf', 'perplexity', 'win_rate', 'unsafe_rate'] as const;
export type SuiteMetric = (typeof SUITE_METRICS)[number];
const suiteMetric = z.enum(SUITE_METRICS);
const metricBounds = z.partialRecord(suiteMetric, z.number()).optional();

/** A named evaluation set beside the held-out split: its own file (any format ingest reads), its metrics, its gates. */
export const testSuiteSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lower-case letters, digits and dashes, at most 63 characters'),
    source: dataSourceSchema.describe('the suite\'s records: a file or s3:// object in any format ingest reads; bad records are quarantined and counted'),
    fields: fieldsSchema.optional().describe('default: data.fields'),
    metrics: z.array(suiteMetric).min(1).max(SUITE_METRICS.length).refine((m) => new Set(m).size === m.length, { message: 'each metric once' }),
    judge: z
      .string()
      .regex(/^(reward|catalog:[a-z0-9][a-z0-9.-]{0,62})$/, '"reward" or "catalog:<base model name>"')
      .optional()
      .describe('with win_rate: who judges each pair of answers (in both orders): "reward", the RLHF stage\'s reward model (rlhf.method rl), or "catalog:<name>", a base model of the catalog asked which answer is better'),
    min: metricBounds.describe('fail the run when a metric is below this'),
    max: metricBounds.describe('fail the run when a metric is above this (perplexity, unsafe_rate)'),
  })
  .strict()
  .superRefine((suite, ctx) => {
    const judged = suite.metrics.includes('win_rate');
    if (judged && !suite.judge) ctx.addIssue({ code: 'custom', path: ['judge'], message: 'required with the win_rate metric: "reward" or "catalog:<base model name>"' });
    if (!judged && suite.judge) ctx.addIssue({ code: 'custom', path: ['judge'], message: 'judges the win_rate metric, which the suite\'s metrics do not list' });
    for (const side of ['min', 'max'] as const) {
      for (const metric of Object.keys(suite[side] ?? {})) {
        if (!suite.metrics.includes(metric as SuiteMetric)) ctx.addIssue({ code: 'custom', path: [side, metric], message: `a bound on ${metric}, which the suite's metrics do not list` });
      }
    }
  });
export type TestSuiteSpec = z.output<typeof testSuiteSchema>;

export const pipelineSpecSchema = z
  .object({
    apiVersion: z.literal('tempered/v1'),
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lower-case letters, digits and dashes, at most 63 characters'),
    description: z.string().optional(),
    cache: z
      .boolean()
      .optional()
      .describe('false: recompute every stage; by default a stage whose config, inputs and code are unchanged reuses its earlier result (stage cache)'),
    data: z
      .object({
        sources: z.array(dataSourceSchema).min(1, 'at least one data source is required'),
        fields: fieldsSchema.prefault({}),
        records: recordFormat
          .default('auto')
          .describe('auto: each row by its fields (messages, then prompt/completion, instruction/output, the prompt/response fields, text); or one format for every row, a row that does not fit it quarantined'),
        shards: z
          .object({
            bytes: z
              .number()
              .int()
              .min(1024)
              .default(DEFAULT_SHARD_BYTES)
              .describe('a dataset (or cleaned data) larger than this many bytes is cleaned (or encoded) on shards of about this size, by every worker of the data pool; the output is byte for byte the same as in one piece'),
            parallel: z.number().int().min(1).max(64).default(8).describe('how many shards are worked on at once'),
          })
          .strict()
          .prefault({})
          .describe('scale-out of the clean and tokenize stages over the workers of pools.data'),
      })
      .strict(),
    clean: z
      .object({
        nfkc: z.boolean().default(true),
        stripControl: z.boolean().default(true),
        collapseWhitespace: z.boolean().default(true),
        dedupe: z
          .enum(['exact', 'near', 'none'])
          .default('exact')
          .describe('exact: records of the same cleaned content; near: those, then near duplicates by MinHash LSH on character 5-grams (14 bands × 8 rows, as datatrove), which works on Japanese and Chinese too'),
        nearThreshold: z
          .number()
          .gt(0)
          .max(1)
          .default(0.7)
          .describe('with dedupe: near, the estimated Jaccard similarity of character 5-grams from which a record is a near duplicate of a kept one'),
        maskPii: z.boolean().default(true).describe('mask e-mail addresses and phone numbers'),
        minChars: z.number().int().min(0).default(1),
        maxChars: z.number().int().positive().default(4000),
        languages: z
          .array(z.enum([...LANGUAGE_CODES, UNDETERMINED]))
          .min(1)
          .optional()
          .describe('keep only records in these languages (ISO 639-1 codes, as the tinyld language identifier names them, and `und` for text it cannot place: digits, symbols, a word or two); records are counted per language whenever this is set; off when absent'),
        blocklist: z
          .object({
            languages: z.array(z.enum(BLOCKLIST_LANGUAGES)).default([]).describe('packaged lists (npm naughty-words) of these languages'),
            words: z.array(z.string().trim().min(1)).default([]).describe('more words and phrases'),
          })
          .strict()
          .prefault({})
          .describe('remove records that hold an entry: whole words where a language has spaces, substrings in Chinese, Japanese and Thai; off while both lists are empty'),
        quality: qualitySchema
          .optional()
          .describe("Gopher's quality heuristics (word counts, mean word length, symbol and digit ratios, bullet and ellipsis lines, repeated lines and n-grams), a word being one character in Chinese, Japanese and Thai; off when absent, `quality: {}` takes Gopher's thresholds"),
      })
      .strict()
      .refine((c) => c.minChars <= c.maxChars, { message: 'minChars must not exceed maxChars', path: ['minChars'] })
      .prefault({}),
    tokenizer: z
      .object({
        vocabSize: z.number().int().min(260).max(65536).default(512),
        minFrequency: z.number().int().positive().default(2),
        sampleBytes: z
          .number()
          .int()
          .min(1024)
          .default(DEFAULT_VOCABULARY_SAMPLE_BYTES)
          .describe('the vocabulary is learnt from at most about this many bytes of the cleaned records, read from 64 windows spread evenly over them (all of them when they are smaller); encoding covers every record'),
      })
      .strict()
      .prefault({}),
    split: z
      .object({
        validation: z.number().gt(0).lt(0.5).default(0.1),
        test: z.number().gt(0).lt(0.5).default(0.1),
        salt: z.string().default('tempered').describe('changing it reshuffles every record; keep it fixed across retrains'),
      })
      .strict()
      .refine((s) => s.validation + s.test < 0.9, { message: 'validation + test must leave at least 10% for training', path: ['test'] })
      .prefault({}),
    model: z
      .object({
        type: z
          .enum(MODEL_TYPES)
          .default('causal-lm')
          .describe(
            'causal-lm: a language model (from scratch, or model.base fine-tuned); tfidf-logreg: not a language model but a classifier, TF-IDF of the prompt\'s tokens and a logistic regression (scikit-learn) over test.choices, trained, validated, tested, deployed and served (its answer is the label, with its probability) through the same stages; RLHF does not apply to it',
          ),
        classifier: z
          .object({
            c: z.number().positive().max(1e6).default(10).describe("the logistic regression's inverse regularisation strength (scikit-learn's C)"),
            ngrams: z.number().int().min(1).max(3).default(2).describe('token n-grams from 1 to this'),
          })
          .strict()
          .prefault({})
          .describe('settings of model.type tfidf-logreg (a causal-lm ignores them)'),
        base: z
          .union([
            z.object({ name: z.string().regex(/^[a-z0-9][a-z0-9.-]{0,62}$/, 'a base model name from the catalog, such as smollm2-135m-instruct') }).strict(),
            z.object({ uri: z.string().min(1) }).strict(),
          ])
          .optional()
          .describe(
            'fine-tune this base model instead of training a tiny one from scratch: {name} of a model in the base-model catalog (GET /api/base-models), or {uri} of a Hugging Face model (config.json, model.safetensors, tokenizer.json) as a model.tar or directory, by s3:// URI or local path; its architecture, tokenizer and chat template replace the settings below and the tokenizer stage',
          ),
        maxSeqLength: z
          .number()
          .int()
          .min(8)
          .max(131072)
          .optional()
          .describe("records are cut to this many tokens in training and evaluation (default: the model's context length); bounds memory for a base model with a long context"),
        nLayer: z.number().int().min(1).max(48).default(2),
        nHead: z.number().int().min(1).max(64).default(4),
        nEmbd: z.number().int().min(8).max(8192).default(128),
        contextLength: z.number().int().min(8).max(8192).default(64),
      })
      .strict()
      .refine((m) => m.nEmbd % m.nHead === 0, { message: 'nEmbd must be a multiple of nHead', path: ['nEmbd'] })
      .prefault({}),
    train: z
      .object({
        steps: z.number().int().positive().default(300),
        batchSize: z.number().int().positive().default(32),
        learningRate: z.number().positive().max(1).default(3e-3),
        warmupSteps: z.number().int().min(0).default(20),
        weightDecay: z.number().min(0).default(0.01),
        checkpointEvery: z.number().int().positive().default(100),
        gradientAccumulation: z.number().int().min(1).max(1024).default(1).describe('micro-batches of batchSize per optimizer step: the effective batch is batchSize × gradientAccumulation'),
        gradientCheckpointing: z.boolean().default(false).describe('recompute activations in the backward pass: less memory, about a third more time'),
        gpus: z
          .number()
          .int()
          .min(1)
          .max(64)
          .default(1)
          .describe('data-parallel processes on one worker (torchrun, DDP): that many GPU slots, or CPU processes on a worker without GPUs; batchSize stays the global batch and must be a multiple of it'),
        seed: z.number().int().min(0).default(0),
        lora: z
          .object({
            r: z.number().int().positive(),
            alpha: z.number().positive().optional().describe('defaults to r'),
            dropout: z.number().min(0).lt(1).optional(),
            targetModules: z
              .array(z.string().min(1))
              .min(1)
              .optional()
              .describe("defaults by architecture: llama, mistral, qwen2: q_proj, k_proj, v_proj, o_proj; GPT-2: c_attn and c_proj"),
          })
          .strict()
          .optional()
          .describe('train a LoRA adapter only (base weights frozen); the model is delivered merged, the adapter alongside'),
        heartbeatTimeout: duration
          .default('2m')
          .describe('a trainer silent this long is taken for hung: killed, and the attempt retried from its last checkpoint'),
        sweep: z
          .object({
            learningRates: z.array(z.number().positive().max(1)).min(2).max(4),
          })
          .strict()
          .optional()
          .describe('train one candidate per learning rate in parallel; validation keeps the best'),
      })
      .strict()
      .refine((t) => t.batchSize % t.gpus === 0, {
        message: 'batchSize must be a multiple of gpus: it is the global batch, split evenly over the processes',
        path: ['batchSize'],
        // Only between two valid numbers: a bad gpus or batchSize is its own issue, not also this one.
        when: (payload) => payload.issues.every((i) => i.path?.[0] !== 'gpus' && i.path?.[0] !== 'batchSize'),
      })
      .prefault({}),
    validate: z
      .object({
        maxLoss: z.number().positive().optional().describe('fail the run when the best validation loss is above this'),
        maxPerplexity: z.number().positive().optional(),
      })
      .strict()
      .prefault({}),
    rlhf: z
      .object({
        method: z
          .enum(['dpo', 'rl', 'none'])
          .default('dpo')
          .describe('dpo: direct preference optimisation; rl: a reward model from the pairs, then online RL (GRPO) against it'),
        source: z
          .enum(['dataset', 'labels', 'feedback'])
          .default('dataset')
          .describe('dataset: the pairs in `preferences`; labels: pairs people label in the dashboard, sampled from the trained model (the run waits for them); feedback: pairs from the feedback people gave the serving model of this name through the gateway (plus `preferences`, when given)'),
        preferences: dataSourceSchema.optional().describe('JSONL (gzip- or zstd-compressed too) with prompt, chosen and rejected'),
        labels: z
          .object({
            required: z.number().int().positive().max(10_000).default(20).describe('labels the run waits for before RLHF continues'),
            pairs: z.number().int().positive().max(10_000).optional().describe('pairs offered for labeling (default: 1.5 × required)'),
            temperature: z.number().positive().max(5).default(1).describe('sampling temperature of the two responses'),
            maxNewTokens: z.number().int().positive().max(512).default(24),
          })
          .strict()
          .prefault({})
          .describe('with source: labels'),
        steps: z.number().int().positive().default(60),
        batchSize: z.number().int().positive().default(16),
        learningRate: z.number().positive().max(1).default(5e-4),
        beta: z.number().min(0).default(0.1).describe("DPO's beta, or with rl the weight of the KL penalty to the starting model"),
        reward: z
          .object({
            steps: z.number().int().positive().default(100),
            learningRate: z.number().positive().max(1).default(1e-3),
          })
          .strict()
          .prefault({})
          .describe('the reward model trained from the preference pairs before RL'),
        numGenerations: z.number().int().min(2).max(64).default(4).describe('rl: samples per prompt, compared with each other'),
        maxNewTokens: z.number().int().positive().max(512).default(16).describe('rl: longest sampled response'),
        temperature: z.number().positive().max(5).default(1).describe('rl: sampling temperature of the rollouts; lower suits a weak starting model'),
      })
      .strict()
      .refine((r) => r.method === 'none' || r.source !== 'dataset' || r.preferences !== undefined, {
        message: 'required when method is not "none" and source is "dataset"',
        path: ['preferences'],
      })
      .prefault({}),
    test: z
      .object({
        maxNewTokens: z.number().int().positive().max(512).default(24),
        minExactMatch: z.number().min(0).max(1).optional().describe('fail the run when test exact-match is below this'),
        choices: z
          .array(z.string().trim().min(1).max(100))
          .min(2)
          .max(100)
          .refine((c) => new Set(c.map((x) => x.toLowerCase())).size === c.length, { message: 'choices must differ (case-insensitively)' })
          .optional()
          .describe('a classification task: the label extracted from each answer (the first of these words it contains, case-insensitively) is scored for accuracy and macro-F1 against the reference'),
        minAccuracy: z.number().min(0).max(1).optional().describe('with choices: fail the run when test accuracy is below this'),
        championMargin: z
          .number()
          .min(-1)
          .max(1)
          .default(0)
          .describe("when a model of this name is serving, the challenger's exact match must beat it by at least this on the same test records (0: not worse), judged on the paired 95% interval of the difference: only a challenger whose whole interval lies below the margin needs an approver's override at the gate"),
        maxRegressions: z
          .number()
          .int()
          .min(0)
          .optional()
          .describe('when a model of this name is serving: fail the run when more than this many test records the serving model answers right are answered wrong by the challenger'),
        maxLoss: z.number().positive().optional(),
        suites: z
          .array(testSuiteSchema)
          .max(8)
          .refine((s) => new Set(s.map((x) => x.name)).size === s.length, { message: 'suite names must differ' })
          .optional()
          .describe('named evaluation sets beside the held-out split, each with its metrics (exact match, label accuracy and macro-F1 with choices, ROUGE-L, chrF, perplexity) and optional min/max gates'),
      })
      .strict()
      .refine((t) => t.minAccuracy === undefined || t.choices !== undefined, { message: 'minAccuracy needs choices (the labels accuracy is scored on)', path: ['minAccuracy'] })
      .superRefine((t, ctx) => {
        for (const [i, suite] of (t.suites ?? []).entries()) {
          for (const [j, metric] of suite.metrics.entries()) {
            if ((metric === 'accuracy' || metric === 'macro_f1') && !t.choices) ctx.addIssue({ code: 'custom', path: ['suites', i, 'metrics', j], message: `${metric} needs test.choices (the labels it is scored on)` });
          }
        }
      })
      .prefault({}),
    optimize: optimizeSchema
      .optional()
      .describe(
        'after test: export the model to GGUF with llama.cpp (f16, q8_0, q4_k_m), score each type on the held-out split and the suites, and record its size, tokens/s and every metric change against the model it came from',
      ),
    deploy: z
      .object({
        approvalTimeout: duration.default('24h'),
        smokePrompt: z.string().min(1).default('Hello').describe('sent to the served model after deployment; it must answer with text'),
        canary: canarySchema.optional().describe('when a version of this model is serving, shift traffic to the new one in steps, watching it, instead of all at once'),
        engine: z
          .enum(SERVING_ENGINES)
          .default('tempered')
          .describe("the model server: tempered (the trainer's own OpenAI-compatible server, PyTorch) or llamacpp (llama.cpp's server from llama-cpp-python, serving the version exported to GGUF; CPU)"),
        quantization: z
          .enum(GGUF_TYPES)
          .optional()
          .describe('with engine llamacpp: the GGUF type served, f16, q8_0 (the default) or q4_k_m; exported once per version and kept as a downloadable artifact'),
      })
      .strict()
      .superRefine((d, ctx) => {
        if (d.quantization !== undefined && d.engine !== 'llamacpp') {
          ctx.addIssue({ code: 'custom', path: ['quantization'], message: `a GGUF type, which only engine llamacpp serves; engine is ${d.engine}` });
        }
      })
      .prefault({}),
    pools: z
      .object({
        data: pool.default('cpu'),
        train: pool.default('gpu'),
        rlhf: pool.default('gpu'),
        eval: pool.default('gpu'),
      })
      .strict()
      .prefault({}),
    retrain: retrainSchema
      .optional()
      .describe('when this pipeline retrains by itself: on a clock, or when new data or feedback arrives (used by `tempered schedules create`)'),
  })
  .strict()
  .superRefine((spec, ctx) => {
    if (spec.model.type === 'tfidf-logreg') {
      // A classifier learns the labels its answers name, and is nothing to align or to put a LoRA adapter on.
      const need: Array<[boolean, (string | number)[], string]> = [
        [!spec.test.choices, ['test', 'choices'], 'model.type tfidf-logreg learns to answer with one of test.choices: list the labels'],
        [spec.rlhf.method !== 'none', ['rlhf', 'method'], 'model.type tfidf-logreg is not aligned by RLHF: set rlhf.method none'],
        [spec.model.base !== undefined, ['model', 'base'], 'model.type tfidf-logreg trains from the data alone: leave model.base out'],
        [spec.train.lora !== undefined, ['train', 'lora'], 'model.type tfidf-logreg has no weights for a LoRA adapter: leave train.lora out'],
        [spec.train.sweep !== undefined, ['train', 'sweep'], 'model.type tfidf-logreg has no learning rate to sweep: leave train.sweep out'],
        [spec.train.gpus > 1, ['train', 'gpus'], 'model.type tfidf-logreg trains in one process on CPU: leave train.gpus at 1'],
        [spec.deploy.engine === 'llamacpp', ['deploy', 'engine'], 'model.type tfidf-logreg is no language model for llama.cpp to serve: leave deploy.engine tempered'],
        [spec.optimize !== undefined, ['optimize'], 'model.type tfidf-logreg is no language model to export to GGUF: leave optimize out'],
      ];
      for (const [wrong, path, message] of need) if (wrong) ctx.addIssue({ code: 'custom', path, message });
    }
    // The type llama.cpp serves must be one optimize scored, or its tolerance would say nothing about it.
    const served = spec.deploy.quantization ?? DEFAULT_GGUF_TYPE;
    if (spec.optimize && spec.deploy.engine === 'llamacpp' && !spec.optimize.types.includes(served)) {
      ctx.addIssue({
        code: 'custom',
        path: ['deploy', 'quantization'],
        message: `llama.cpp would serve ${served}, which optimize.types (${spec.optimize.types.join(', ')}) does not score: add it there or serve one of them`,
      });
    }
    // Only rlhf.method rl trains a reward model (DPO has none): a suite judged by it needs one.
    for (const [i, suite] of (spec.test.suites ?? []).entries()) {
      if (suite.judge === 'reward' && spec.rlhf.method !== 'rl') {
        ctx.addIssue({ code: 'custom', path: ['test', 'suites', i, 'judge'], message: `"reward" needs rlhf.method rl (the reward model it judges with); rlhf.method is ${spec.rlhf.method}` });
      }
    }
  });

/** A spec as written by a person (defaults optional). */
export type PipelineSpecInput = z.input<typeof pipelineSpecSchema>;
/** A validated spec with every default filled in: what a run receives. */
export type PipelineSpec = z.output<typeof pipelineSpecSchema>;
export type DataSource = z.output<typeof dataSourceSchema>;
export type RetrainSpec = z.output<typeof retrainSchema>;
