/**
 * Configuration of every Tempered process, parsed once from the environment.
 *
 * Nothing else in the code base reads `process.env` for Tempered settings: services call `loadConfig()` at
 * start and pass the result down. Every default targets the embedded stack on one machine (see
 * infra/README.md); every value can point at production parts instead (a Temporal cluster, any PostgreSQL,
 * AWS S3). The embedded PostgreSQL's and S3's credentials are no defaults: `stack up` generates them at the
 * first start into `<dataDir>/secrets.json` (./secrets.ts), read here when the environment gives none.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { BLOCKLIST_LANGUAGES } from '@tempered/text/codes';
import { type Limits, limitsFrom } from './limits';
import { readSecrets } from './secrets';

export * from './limits';
export * from './local-data';
export { ensureSecrets, type GeneratedSecrets, readSecrets, secretsPath } from './secrets';

/** The repository root: this file lives at packages/config/src/index.ts. */
export const repoRoot = path.resolve(__dirname, '..', '..', '..');

/** Default ports of the embedded stack; TEMPERED_PORT_OFFSET shifts them all (the test stack uses it). */
export const defaultPorts = {
  temporal: 7233,
  temporalUi: 8233,
  postgres: 5433,
  s3: 7070,
  api: 8080,
  model: 8090,
  gateway: 8070,
} as const;

export interface Config {
  dataDir: string;
  cacheDir: string;
  ports: { [K in keyof typeof defaultPorts]: number };
  temporal: { address: string; namespace: string };
  databaseUrl: string;
  s3: {
    endpoint: string | undefined;
    region: string;
    bucket: string;
    /** Every artifact key lives under this prefix; nothing outside it is ever read or written. */
    prefix: string;
    accessKeyId: string;
    secretAccessKey: string;
    forcePathStyle: boolean;
  };
  /** Python interpreter of the ML runtime (services/trainer). */
  python: string;
  /** Directory of the Python trainer package, put on PYTHONPATH. */
  trainerDir: string;
  api: { url: string; port: number; token: string | undefined };
  /** The inference gateway (services/gateway): OpenAI-compatible routing, use-stage processing, feedback. */
  gateway: {
    url: string;
    port: number;
    /** When set, every gateway route but /healthz requires `Authorization: Bearer <key>`. */
    key: string | undefined;
    /** Words replaced in model output (TEMPERED_BLOCKLIST, comma-separated), added to those of `blocklistFile`. */
    blocklist: string[];
    /** A file with one blocked word or phrase per line (`#` starts a comment): TEMPERED_BLOCKLIST_FILE. */
    blocklistFile: string | undefined;
    /**
     * Languages whose packaged lists (npm naughty-words, through @tempered/text/blocklist) the gateway also
     * blocks: TEMPERED_BLOCKLIST_LANGUAGES, comma-separated codes such as `en,ja,zh`; none by default.
     */
    blocklistLanguages: string[];
    /** How long an upstream model server may take to answer one request (a stream: to send its next chunk). */
    upstreamTimeoutMs: number;
    /** The most tokens one request may ask for (`max_tokens`, `max_completion_tokens`): TEMPERED_GATEWAY_MAX_TOKENS. */
    maxTokens: number;
  };
  /** Worker scratch space for staged inputs and trainer output. */
  workDir: string;
  /**
   * Base models the bootstrap converted from registry packages (TEMPERED_BASE_MODELS_DIR, default
   * `<cacheDir>/base-models`): one folder per model with `model/` (a Hugging Face directory), `model.tar` and
   * `manifest.json` (name, architecture, parameters, licence, source, sha256 of model.tar).
   */
  baseModelsDir: string;
  /**
   * Directories a spec's local data paths may point into (the examples, `<dataDir>/uploads`, and
   * TEMPERED_LOCAL_DATA_ROOTS); anything else must come through S3. The rest of the data directory, which
   * holds credentials, is never readable this way.
   */
  localDataRoots: string[];
  /** What one spec or schedule may ask of the machines (TEMPERED_MAX_*, TEMPERED_MIN_*; see ./limits.ts). */
  limits: Limits;
  /** Parts of the stack given from outside (TEMPORAL_ADDRESS, DATABASE_URL, S3_ENDPOINT set): `stack up` starts only the rest. */
  external: { temporal: boolean; postgres: boolean; s3: boolean };
  /**
   * The key with which the API signs gate decisions and the workers check them (TEMPERED_APPROVAL_KEY_FILE,
   * default `<dataDir>/approval.key`, created mode 600 at first use: see ./approval-key.ts).
   */
  approvalKeyFile: string;
  /** Off with TEMPERED_STAGE_CACHE=off (or 0, false, no, disabled): no stage reuses another run's output. */
  stageCache: boolean;
  /** The parent's variables that `stack up` may pass on to the processes it starts (see `stackEnv`). */
  stackInherited: Record<string, string>;
  /** The Python children (trainer jobs and model servers) and what they inherit. */
  trainer: {
    /** TEMPERED_NUM_THREADS: torch's intra-op threads in each trainer process (default: one per core). */
    threads: number | undefined;
    /**
     * Off with TEMPERED_TRAINER_PREFORK=off (or 0, false, no, disabled): each trainer job imports the ML
     * libraries itself instead of forking from the worker's pre-started trainer (activities/src/trainer-server.ts).
     */
    prefork: boolean;
    /**
     * TEMPERED_TRAINER_SLOTS: trainer jobs a worker runs at once on CPU (its `--trainer-slots` flag wins);
     * unset, the worker takes one per two cores (activities/src/slots.ts). GPU jobs take one GPU each instead.
     */
    slots: number | undefined;
    /** The parent's variables a child may see (CHILD_ENV_ALLOWED): never a credential. */
    inherited: Record<string, string>;
  };
}

/**
 * What a trainer job or a model server may inherit from the process that starts it: the operating system's
 * and the ML runtime's settings. Everything else (S3 keys, API tokens, the gateway key, DATABASE_URL) stays
 * out, so a model's code or a dependency cannot read a platform secret from its environment. The same list is
 * the system part of what each process of the stack inherits (`stackEnvAllows`).
 */
export const CHILD_ENV_ALLOWED = [
  'PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'LANGUAGE', 'LC_ALL', 'LC_CTYPE', 'TZ', 'TMPDIR', 'TEMP', 'TMP',
  'XDG_CACHE_HOME', 'HF_HOME', 'TORCH_HOME', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OMP_WAIT_POLICY',
  'CUDA_HOME', 'CUDA_DEVICE_ORDER', 'LD_LIBRARY_PATH', 'NVIDIA_VISIBLE_DEVICES', 'PYTORCH_CUDA_ALLOC_CONF', 'NCCL_DEBUG',
] as const;

type Env = Record<string, string | undefined>;

/** The processes `stack up` starts, each in an environment of its own (`stackEnv`). */
export type StackProcess = 'temporal' | 'postgres' | 's3' | 'worker' | 'api' | 'gateway';

/**
 * Credentials the environment may give (parts outside the stack, a fixed API token, the gateway key), and the
 * processes of the stack whose configuration uses each: no other one is started with it. The secrets the
 * stack generates itself are not here: they stay in secrets.json, which `loadConfig` reads.
 */
export const SECRET_ENV: Readonly<Record<string, readonly StackProcess[]>> = {
  DATABASE_URL: ['worker', 'api', 'gateway'],
  AWS_ACCESS_KEY_ID: ['worker', 'api'],
  AWS_SECRET_ACCESS_KEY: ['worker', 'api'],
  TEMPERED_API_TOKEN: ['api'],
  // The API too: the dashboard's playground reaches the gateway through it (the browser never holds the key).
  TEMPERED_GATEWAY_KEY: ['gateway', 'api'],
};

/** Settings `loadConfig` reads (TEMPERED_*, TEMPORAL_*, S3_*) that are not credentials. */
const SETTING_ENV = /^(TEMPERED|TEMPORAL|S3)_[A-Z0-9_]*$/;
/** Node's own: options and extra TLS roots (for a PostgreSQL, S3 or Temporal outside the stack). */
const NODE_ENV = ['NODE_OPTIONS', 'NODE_EXTRA_CA_CERTS'];
/** The processes of the stack that run Tempered's code and read its configuration. */
const CONFIGURED: readonly StackProcess[] = ['postgres', 'worker', 'api', 'gateway'];

/**
 * Whether a process of the stack may be started with an inherited variable: the system's (CHILD_ENV_ALLOWED)
 * for all; settings and Node's options for those that read the configuration; a credential only for those
 * that use it. The Temporal dev server and the S3 server need nothing of Tempered's (S3 gets its own keys).
 */
export function stackEnvAllows(proc: StackProcess, name: string): boolean {
  if ((CHILD_ENV_ALLOWED as readonly string[]).includes(name)) return true;
  if (!CONFIGURED.includes(proc)) return false;
  if (Object.hasOwn(SECRET_ENV, name)) return SECRET_ENV[name].includes(proc);
  return SETTING_ENV.test(name) || NODE_ENV.includes(name);
}

/** The whole environment `stack up` starts a process with: what it may inherit, and `extra` (its own secrets). */
export function stackEnv(cfg: Pick<Config, 'stackInherited'>, proc: StackProcess, extra: Record<string, string> = {}): Record<string, string> {
  return { ...Object.fromEntries(Object.entries(cfg.stackInherited).filter(([k]) => stackEnvAllows(proc, k))), ...extra };
}

function intFrom(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name}=${raw} is not a whole number; unset it or give one`);
  return n;
}

/** The codes of TEMPERED_BLOCKLIST_LANGUAGES; one without a packaged list stops the process at start, named. */
function blocklistLanguagesFrom(raw: string | undefined): string[] {
  const codes = (raw ?? '').split(',').map((c) => c.trim()).filter(Boolean);
  const unknown = codes.filter((c) => !(BLOCKLIST_LANGUAGES as readonly string[]).includes(c));
  if (unknown.length) throw new Error(`TEMPERED_BLOCKLIST_LANGUAGES: no blocklist for ${unknown.join(', ')}; known: ${BLOCKLIST_LANGUAGES.join(', ')}`);
  return codes;
}

/** A feature switch that is on unless set to off, 0, false, no or disabled. */
const switchedOn = (raw: string | undefined) => !['off', '0', 'false', 'no', 'disabled'].includes((raw ?? '').trim().toLowerCase());

/** Where the Python venv for a given requirements file lives: keyed by its content, outside the repo. */
export function venvDir(cacheDir: string): string {
  const reqPath = path.join(repoRoot, 'services', 'trainer', 'requirements.txt');
  let req: Buffer;
  try {
    req = readFileSync(reqPath);
  } catch {
    throw new Error(`${reqPath} is missing: the checkout is incomplete`);
  }
  const digest = createHash('sha256').update(req).digest('hex').slice(0, 12);
  return path.join(cacheDir, 'venv', digest);
}

export function loadConfig(env: Env = process.env): Config {
  const dataDir = path.resolve(env.TEMPERED_DATA_DIR || path.join(repoRoot, '.tempered', 'data'));
  const cacheDir = path.resolve(env.TEMPERED_CACHE_DIR || path.join(env.XDG_CACHE_HOME || path.join(homedir(), '.cache'), 'tempered'));
  const offset = intFrom(env, 'TEMPERED_PORT_OFFSET', 0);
  const ports = Object.fromEntries(
    Object.entries(defaultPorts).map(([k, v]) => [k, v + offset]),
  ) as { -readonly [K in keyof Config['ports']]: number };
  const apiPort = intFrom(env, 'TEMPERED_API_PORT', ports.api);
  ports.api = apiPort;
  const gatewayPort = intFrom(env, 'TEMPERED_GATEWAY_PORT', ports.gateway);
  ports.gateway = gatewayPort;
  // The embedded PostgreSQL's and S3's credentials, generated at the first `stack up`; absent before it (a
  // process started then fails to authenticate, which is right: nothing else would be accepted).
  const generated = env.DATABASE_URL && env.S3_ENDPOINT ? undefined : readSecrets(dataDir);
  return {
    dataDir,
    cacheDir,
    ports,
    temporal: {
      address: env.TEMPORAL_ADDRESS || `127.0.0.1:${ports.temporal}`,
      namespace: env.TEMPORAL_NAMESPACE || 'default',
    },
    databaseUrl: env.DATABASE_URL || `postgres://postgres:${encodeURIComponent(generated?.postgresPassword ?? '')}@127.0.0.1:${ports.postgres}/tempered`,
    s3: {
      endpoint: env.S3_ENDPOINT === 'aws' ? undefined : env.S3_ENDPOINT || `http://127.0.0.1:${ports.s3}`,
      region: env.S3_REGION || 'us-east-1',
      bucket: env.S3_BUCKET || 'tempered',
      prefix: (env.S3_PREFIX ?? 'tempered/').replace(/^\/+/, ''),
      accessKeyId: env.AWS_ACCESS_KEY_ID || (env.S3_ENDPOINT ? '' : generated?.s3AccessKeyId) || '',
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY || (env.S3_ENDPOINT ? '' : generated?.s3SecretAccessKey) || '',
      forcePathStyle: env.S3_FORCE_PATH_STYLE !== 'false',
    },
    python: env.TEMPERED_PYTHON || path.join(venvDir(cacheDir), 'bin', 'python'),
    trainerDir: path.join(repoRoot, 'services', 'trainer'),
    api: {
      url: env.TEMPERED_API_URL || `http://127.0.0.1:${apiPort}`,
      port: apiPort,
      token: env.TEMPERED_API_TOKEN || undefined,
    },
    gateway: {
      url: env.TEMPERED_GATEWAY_URL || `http://127.0.0.1:${gatewayPort}`,
      port: gatewayPort,
      key: env.TEMPERED_GATEWAY_KEY || undefined,
      blocklist: (env.TEMPERED_BLOCKLIST ?? '').split(',').map((w) => w.trim()).filter(Boolean),
      blocklistFile: env.TEMPERED_BLOCKLIST_FILE ? path.resolve(env.TEMPERED_BLOCKLIST_FILE) : undefined,
      blocklistLanguages: blocklistLanguagesFrom(env.TEMPERED_BLOCKLIST_LANGUAGES),
      upstreamTimeoutMs: intFrom(env, 'TEMPERED_GATEWAY_UPSTREAM_TIMEOUT_MS', 60_000),
      maxTokens: intFrom(env, 'TEMPERED_GATEWAY_MAX_TOKENS', 4096),
    },
    workDir: path.resolve(env.TEMPERED_WORK_DIR || path.join(dataDir, 'work')),
    baseModelsDir: path.resolve(env.TEMPERED_BASE_MODELS_DIR || path.join(cacheDir, 'base-models')),
    localDataRoots: [path.join(repoRoot, 'examples'), path.join(dataDir, 'uploads'), ...(env.TEMPERED_LOCAL_DATA_ROOTS ?? '').split(':').filter(Boolean).map((p) => path.resolve(p))],
    limits: limitsFrom(env),
    external: { temporal: Boolean(env.TEMPORAL_ADDRESS), postgres: Boolean(env.DATABASE_URL), s3: Boolean(env.S3_ENDPOINT) },
    approvalKeyFile: path.resolve(env.TEMPERED_APPROVAL_KEY_FILE || path.join(dataDir, 'approval.key')),
    stageCache: switchedOn(env.TEMPERED_STAGE_CACHE),
    stackInherited: Object.fromEntries(
      Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined && CONFIGURED.some((p) => stackEnvAllows(p, e[0]))),
    ),
    trainer: {
      threads: env.TEMPERED_NUM_THREADS ? intFrom(env, 'TEMPERED_NUM_THREADS', 0) || undefined : undefined,
      prefork: switchedOn(env.TEMPERED_TRAINER_PREFORK),
      slots: env.TEMPERED_TRAINER_SLOTS ? intFrom(env, 'TEMPERED_TRAINER_SLOTS', 0) || undefined : undefined,
      inherited: Object.fromEntries(CHILD_ENV_ALLOWED.flatMap((k) => (env[k] === undefined ? [] : [[k, env[k] as string]]))),
    },
  };
}

/**
 * The whole environment of a Python child (a trainer job, a model server): the allowed inherited variables,
 * the trainer package on PYTHONPATH, Hugging Face libraries offline (weights come from registry packages and
 * S3, never a hub), the thread count, and `extra` (a job's GPU choice).
 */
export function childEnv(cfg: Pick<Config, 'trainerDir' | 'trainer'>, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...cfg.trainer.inherited,
    PYTHONPATH: cfg.trainerDir,
    PYTHONUNBUFFERED: '1',
    HF_HUB_OFFLINE: '1',
    TRANSFORMERS_OFFLINE: '1',
    // "Is CUDA available?" asked through NVML, which makes no CUDA context: the pre-started trainer forks its jobs
    // after importing the libraries, and a context made before a fork is unusable in the child.
    PYTORCH_NVML_BASED_CUDA_CHECK: '1',
    ...(cfg.trainer.threads ? { TEMPERED_NUM_THREADS: String(cfg.trainer.threads) } : {}),
    ...extra,
  };
}

export { approvalKey, approvalSignature, type SignedFields } from './approval-key';

/** Connection details that may be printed: never credentials. */
export function describe(cfg: Config): Record<string, string> {
  return {
    temporal: `${cfg.temporal.address} (namespace ${cfg.temporal.namespace})`,
    postgres: cfg.databaseUrl.replace(/\/\/([^:@/]+):[^@]*@/, '//$1:***@'),
    s3: `${cfg.s3.endpoint ?? 'aws'} bucket ${cfg.s3.bucket}/${cfg.s3.prefix}`,
    api: cfg.api.url,
    gateway: `${cfg.gateway.url}/v1 (OpenAI-compatible${cfg.gateway.key ? ', bearer key required' : ''})`,
    dataDir: cfg.dataDir,
  };
}
