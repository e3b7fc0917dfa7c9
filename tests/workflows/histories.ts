/**
 * The saved workflow histories in tests/histories and what they were recorded from: one webpack bundle of the
 * workflow code (the one the worker would build), the files that went into it and a sha256 over them, and the
 * manifest that tests/workflows/record-histories.ts writes beside the histories. replay.test.ts replays every
 * history against the bundle and fails when the sources' digest is not the manifest's, so a change to workflow
 * code cannot land without recording its branches again.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { repoRoot } from '../support';

export const HISTORIES_DIR = path.join(repoRoot, 'tests', 'histories');
export const MANIFEST_FILE = path.join(HISTORIES_DIR, 'manifest.json');
/** What a developer runs after changing workflow code (the root package.json's script). */
export const RECORD_COMMAND = 'npm run record-histories';
export const WORKFLOWS_PATH = require.resolve('@tempered/workflows/workflows');

export interface WorkflowCode {
  /** For Worker.create and Worker.runReplayHistory (`workflowBundle`), so one bundle serves every worker. */
  bundle: { code: string };
  /** Repository path of each project file in the bundle (and every file under workflows/src) → its sha256; `npm:<package>` → version for the bundled packages. */
  sources: Record<string, string>;
  /** sha256 over `sources`. */
  sha256: string;
}

let code: Promise<WorkflowCode> | undefined;

/** Bundles the workflow code once per process and digests what went into the bundle. */
export function workflowCode(): Promise<WorkflowCode> {
  return (code ??= bundleAndDigest());
}

async function bundleAndDigest(): Promise<WorkflowCode> {
  const modules = new Set<string>();
  const bundle = await bundleWorkflowCode({
    workflowsPath: WORKFLOWS_PATH,
    logger: new DefaultLogger('WARN'),
    webpackConfigHook: (config) => ({
      ...config,
      plugins: [
        ...(config.plugins ?? []),
        {
          apply(compiler) {
            compiler.hooks.done.tap('tempered-workflow-sources', (stats) => {
              for (const m of stats.compilation.modules) {
                const resource = (m as { resource?: string }).resource;
                if (resource) modules.add(resource.split('?')[0]);
              }
            });
          },
        },
      ],
    }),
  });
  // workflows/src/** whether bundled or not (index.ts is the entry point for everything outside).
  const workflowsSrc = path.join(repoRoot, 'workflows', 'src');
  for (const f of readdirSync(workflowsSrc, { recursive: true, encoding: 'utf8' })) modules.add(path.join(workflowsSrc, f));

  const sources: Record<string, string> = {};
  for (const file of modules) {
    if (!existsSync(file) || !statSync(file).isFile()) continue; // the bundler's generated entry point lives in memory
    const pkg = file.includes(`${path.sep}node_modules${path.sep}`) ? packageOf(file) : undefined;
    if (pkg) sources[`npm:${pkg.name}`] = pkg.version;
    else sources[path.relative(repoRoot, file).split(path.sep).join('/')] = sha256(readFileSync(file));
  }
  const sorted = Object.fromEntries(Object.entries(sources).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return { bundle: { code: bundle.code }, sources: sorted, sha256: sha256(JSON.stringify(sorted)) };
}

const packages = new Map<string, { name: string; version: string } | undefined>();
/** The installed package a file of node_modules belongs to (its nearest package.json with a name). */
function packageOf(file: string): { name: string; version: string } | undefined {
  for (let dir = path.dirname(file); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (packages.has(dir)) return packages.get(dir);
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest)) {
      const { name, version } = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string; version?: string };
      if (name) {
        packages.set(dir, { name, version: version ?? '?' });
        return packages.get(dir);
      }
    }
  }
  return undefined;
}

export const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

export interface HistoryEntry {
  /** The workflow branch the history takes. */
  branch: string;
  workflowType: string;
  /** The recorded execution's id, which replay needs: the workflow derives ids from it (the canary child's). */
  workflowId?: string;
  /** The digest of the workflow sources it was recorded from; null for histories recorded before the manifest. */
  workflowSourcesSha256: string | null;
  recordedAt?: string;
  /** How it was recorded. */
  recordedBy: string;
  events?: number;
}

export interface Manifest {
  about: string;
  /** The digest of the workflow sources the newest histories were recorded from: replay.test.ts compares it with the current one. */
  workflowSourcesSha256: string;
  sources: Record<string, string>;
  /** Every history in tests/histories, old ones included: none may go while runs like it can be in flight. */
  histories: Record<string, HistoryEntry>;
}

export const MANIFEST_ABOUT =
  `Written by ${RECORD_COMMAND} (tests/workflows/record-histories.ts). tests/workflows/replay.test.ts replays every history here against the current ` +
  'workflow code and fails when the digest of the workflow sources is not workflowSourcesSha256. Keep old histories: each stands for runs that may still be in flight.';

export function readManifest(): Manifest | undefined {
  return existsSync(MANIFEST_FILE) ? (JSON.parse(readFileSync(MANIFEST_FILE, 'utf8')) as Manifest) : undefined;
}

export function writeManifest(manifest: Manifest): void {
  const histories = Object.fromEntries(Object.entries(manifest.histories).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  writeFileSync(MANIFEST_FILE, `${JSON.stringify({ ...manifest, histories }, null, 2)}\n`);
}

/** The history files in tests/histories (every .json but the manifest). */
export function historyFiles(): string[] {
  return readdirSync(HISTORIES_DIR)
    .filter((f) => f.endsWith('.json') && f !== path.basename(MANIFEST_FILE))
    .sort();
}

/** What changed between two `sources` maps, for a developer to read. */
export function sourceChanges(before: Record<string, string>, after: Record<string, string>): string[] {
  const changes: string[] = [];
  for (const [file, digest] of Object.entries(after)) {
    if (!(file in before)) changes.push(`${file} added`);
    else if (before[file] !== digest) changes.push(file.startsWith('npm:') ? `${file} ${before[file]} → ${digest}` : `${file} changed`);
  }
  for (const file of Object.keys(before)) if (!(file in after)) changes.push(`${file} removed`);
  return changes;
}

interface HistoryEvent {
  eventType?: string | number;
  [attributes: string]: unknown;
}

/** Events that the workflow's own commands (and its answers to updates) write: what a replay checks the code against. */
const COMMAND_EVENTS = new Set([
  'ACTIVITY_TASK_SCHEDULED',
  'ACTIVITY_TASK_CANCEL_REQUESTED',
  'TIMER_STARTED',
  'TIMER_CANCELED',
  'START_CHILD_WORKFLOW_EXECUTION_INITIATED',
  'REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED',
  'SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED',
  'MARKER_RECORDED',
  'UPSERT_WORKFLOW_SEARCH_ATTRIBUTES',
  'WORKFLOW_PROPERTIES_MODIFIED',
  'WORKFLOW_EXECUTION_UPDATE_ACCEPTED',
  'WORKFLOW_EXECUTION_UPDATE_COMPLETED',
  'WORKFLOW_EXECUTION_COMPLETED',
  'WORKFLOW_EXECUTION_FAILED',
  'WORKFLOW_EXECUTION_CANCELED',
  'WORKFLOW_EXECUTION_CONTINUED_AS_NEW',
]);

/**
 * The commands a history holds, in order, without payloads, times and the task events around them (which vary
 * from one recording to the next with timing): two histories of one shape check the same sequence of commands
 * against the workflow code, so a re-recording of an unchanged shape replaces the old file instead of adding one.
 */
export function historyShape(history: { events?: HistoryEvent[] }): string[] {
  return (history.events ?? []).flatMap((e) => {
    const type = String(e.eventType).replace(/^EVENT_TYPE_/, '');
    if (!COMMAND_EVENTS.has(type)) return [];
    const attrs = Object.entries(e).find(([k]) => k.endsWith('EventAttributes'))?.[1] as Record<string, any> | undefined;
    const name = attrs?.activityType?.name ?? attrs?.workflowType?.name ?? attrs?.markerName ?? attrs?.acceptedRequest?.input?.name ?? '';
    return [`${type}${name ? ` ${name}` : ''}`];
  });
}
