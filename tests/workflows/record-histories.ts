/**
 * Records a history of every branch of the workflows for tests/workflows/replay.test.ts:
 *
 *   npm run record-histories        (a running stack: npm start, or infra/src/stack.ts up --core)
 *
 * Each branch runs on the stack's Temporal server against the stand-in activities of tests/workflows/stubs.ts,
 * on task queues of its own, and is checked to have ended as the branch should; its history is written to
 * tests/histories/<branch>.json and the manifest records the digest of the workflow sources it came from.
 *
 * Old histories stay: before recording, every saved history must replay against the current code (else an
 * in-flight run of that kind would break: guard the change with patched()); a history recorded from other
 * code whose shape (its sequence of commands) differs from the new recording's is kept under
 * <branch>.<digest>.json, so runs started before the change are still checked by the replay test. One of the
 * same shape is replaced. Each input (decision, signal, cancel) is sent once the run has settled, so the
 * shape of a recording depends on the code alone, not on timing.
 *
 * The retrain branch starts a lifecyclePipeline child on the control queue and terminates it once started:
 * only the trigger's own history is recorded.
 */
import { readFileSync, renameSync, existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { type Client, type WorkflowHandle, WorkflowFailedError } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import type { CanaryOutcome, EvaluationInput, PipelineInput, PipelineOutcome, RetrainTriggerInput, RetrainTriggerOutcome } from '@tempered/contract';
import type { PipelineSpec } from '@tempered/spec';
import {
  abortCanarySignal,
  approveDeploymentUpdate,
  CANARY_WORKFLOW_TYPE,
  canaryQuery,
  canaryWorkflowId,
  CLEAN_SHARDS_WORKFLOW_TYPE,
  EVALUATE_WORKFLOW_TYPE,
  labelsChangedSignal,
  progressQuery,
  RETRAIN_WORKFLOW_TYPE,
  taskQueueFor,
  TOKENIZE_SHARDS_WORKFLOW_TYPE,
  WORKFLOW_TYPE,
} from '@tempered/workflows';
import { cfg, demoSpec, temporalClient, uniqueId, waitFor } from '../support';
import {
  type HistoryEntry,
  HISTORIES_DIR,
  historyFiles,
  historyShape,
  MANIFEST_ABOUT,
  type Manifest,
  RECORD_COMMAND,
  readManifest,
  sourceChanges,
  workflowCode,
  writeManifest,
} from './histories';
import { stubActivities, type StubOptions } from './stubs';

/** Histories that were here before the manifest, and what they are. */
const PRE_MANIFEST: Record<string, string> = {
  'lifecycle-approved.json': 'approve (recorded by the first workflow tests, before the sweep, RL, label wait, override and canary changes)',
  'demo-e2e.json': 'approve, real activities (tests/e2e/demo.test.ts with RECORD_HISTORIES=1)',
  'real-model-e2e.json': 'approve, real activities on a real base model (tests/e2e/real-model.test.ts with RECORD_HISTORIES=1)',
};

interface Recorded {
  /** The file name in tests/histories, without .json. */
  name: string;
  branch: string;
  workflowId: string;
  workflowType: string;
  /** The history, as the SDK writes it. */
  json?: string;
}

type Variant = 'plain' | 'failing' | 'breaking' | 'champion' | 'retrain' | 'large';
const VARIANTS: Record<Variant, StubOptions> = {
  plain: {},
  failing: { failTrain: 'train.steps: the stand-in refuses this spec', failEvaluate: 'no version of the model is serving (stand-in)' },
  breaking: { canaryBreaks: 2 },
  champion: { championWins: true },
  retrain: { retrainStarts: true },
  large: { dataBytes: 5000 },
};

async function main(): Promise<void> {
  // The branches that fail or are cancelled on purpose, and the ends of terminated runs, would each log a warning.
  Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });
  const code = await workflowCode();
  const previous = readManifest();
  console.log(`workflow sources ${code.sha256.slice(0, 12)} (${Object.keys(code.sources).length} entries)`);
  if (previous && previous.workflowSourcesSha256 !== code.sha256) {
    console.log(`  changed since the last recording: ${sourceChanges(previous.sources, code.sources).join(', ')}`);
  }

  // Old histories first: if one no longer replays, recording new ones would only hide a broken in-flight run.
  const broken: string[] = [];
  for (const file of historyFiles()) {
    const history = JSON.parse(readFileSync(path.join(HISTORIES_DIR, file), 'utf8'));
    await Worker.runReplayHistory({ workflowBundle: code.bundle, replayName: file }, history, previous?.histories[file]?.workflowId).catch((err: Error) => broken.push(`${file}: ${err.message}`));
  }
  if (broken.length > 0) {
    console.error(`These saved histories no longer replay against the current workflow code, so runs like them that are in flight would fail:\n  ${broken.join('\n  ')}`);
    console.error('Guard the new behaviour with patched() (from @temporalio/workflow) so the old runs keep their path, then record again. Nothing was recorded.');
    process.exitCode = 1;
    return;
  }

  const { client, close } = await temporalClient();
  const connection = await NativeConnection.connect({ address: cfg.temporal.address });
  const base = uniqueId('rec').toLowerCase();
  const pools = Object.fromEntries(Object.keys(VARIANTS).map((v) => [v, `${base}-${v}`])) as Record<Variant, string>;
  const workers = await Promise.all(
    (Object.entries(VARIANTS) as Array<[Variant, StubOptions]>).map(([v, opts]) =>
      Worker.create({ connection, taskQueue: taskQueueFor(pools[v]), workflowBundle: code.bundle, activities: stubActivities(opts).activities }),
    ),
  );
  const running = Promise.all(workers.map((w) => w.run()));
  const started: string[] = [];
  let recorded: Recorded[] = [];
  try {
    // Every branch ends before anything is terminated, so that none starts a run after the clean-up.
    const results = await Promise.allSettled(branches(client, pools, started).map((b) => b()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    recorded = results.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
    for (const r of recorded) {
      r.json = historyToJSON(await client.workflow.getHandle(r.workflowId).fetchHistory());
      // A recording must replay against the code it was recorded from (with its workflow id: the canary child's derives from it).
      await Worker.runReplayHistory({ workflowBundle: code.bundle, replayName: r.name }, JSON.parse(r.json), r.workflowId);
    }
  } finally {
    // Nothing recorded here may go on running (a failed branch, the retrain's child).
    for (const id of started) {
      await client.workflow
        .getHandle(id)
        .terminate('history recorded')
        .catch(() => undefined);
    }
    for (const w of workers) w.shutdown();
    await running;
    await connection.close();
    await close();
  }
  // Only once every branch has been recorded and replayed: a failed recording changes nothing.
  const histories: Record<string, HistoryEntry> = { ...previous?.histories };
  let kept = 0;
  for (const r of recorded) {
    const { events, keptAs } = save(r, r.json!, code.sha256, histories[`${r.name}.json`]);
    if (keptAs) {
      histories[keptAs.file] = keptAs.entry;
      kept++;
    }
    histories[`${r.name}.json`] = {
      branch: r.branch,
      workflowType: r.workflowType,
      workflowId: r.workflowId,
      workflowSourcesSha256: code.sha256,
      recordedAt: new Date().toISOString(),
      recordedBy: RECORD_COMMAND,
      events,
    };
  }
  for (const file of historyFiles()) {
    if (histories[file]) continue;
    const history = JSON.parse(readFileSync(path.join(HISTORIES_DIR, file), 'utf8'));
    const workflowType = history.events?.[0]?.workflowExecutionStartedEventAttributes?.workflowType?.name ?? 'unknown';
    histories[file] = { branch: PRE_MANIFEST[file] ?? 'unknown (found in tests/histories, kept)', workflowType, workflowSourcesSha256: null, recordedBy: 'before the manifest', events: history.events?.length };
  }
  const manifest: Manifest = { about: MANIFEST_ABOUT, workflowSourcesSha256: code.sha256, sources: code.sources, histories };
  writeManifest(manifest);
  console.log(`recorded ${recorded.length} histories; ${kept} older ones kept under new names; manifest written`);
}

/**
 * Writes one recording. The history it replaces is kept under another name when it came from other code and
 * takes another path (`entry` is its manifest entry).
 */
function save(r: Recorded, json: string, digest: string, entry: HistoryEntry | undefined): { events: number; keptAs?: { file: string; entry: HistoryEntry } } {
  const file = path.join(HISTORIES_DIR, `${r.name}.json`);
  const events = (JSON.parse(json).events ?? []).length;
  let keptAs: { file: string; entry: HistoryEntry } | undefined;
  if (existsSync(file)) {
    const old = JSON.parse(readFileSync(file, 'utf8'));
    const sameShape = JSON.stringify(historyShape(old)) === JSON.stringify(historyShape(JSON.parse(json)));
    if (entry?.workflowSourcesSha256 !== digest && !sameShape) {
      const tag = (entry?.workflowSourcesSha256 ?? 'pre-manifest').slice(0, 12);
      let name = `${r.name}.${tag}.json`;
      for (let n = 2; existsSync(path.join(HISTORIES_DIR, name)); n++) name = `${r.name}.${tag}-${n}.json`;
      renameSync(file, path.join(HISTORIES_DIR, name));
      keptAs = {
        file: name,
        entry: {
          ...(entry ?? { branch: r.branch, workflowType: r.workflowType, workflowSourcesSha256: null, recordedBy: 'unknown' }),
          branch: `${entry?.branch ?? r.branch} (from earlier workflow code, kept for runs in flight)`,
        },
      };
      console.log(`  kept ${r.name}.json as ${name}: it takes another path than the current code`);
    }
  }
  writeFileSync(file, json);
  console.log(`  ${r.name}.json: ${r.branch} (${events} events)`);
  return { events, keptAs };
}

function specOn(pool: string, tweak: (spec: PipelineSpec) => void = () => {}): PipelineSpec {
  const spec = demoSpec();
  spec.pools = { data: pool, train: pool, rlhf: pool, eval: pool };
  tweak(spec);
  return spec;
}

function branches(client: Client, pools: Record<Variant, string>, started: string[]) {
  async function start(name: string, spec: PipelineSpec): Promise<WorkflowHandle> {
    const input: PipelineInput = { spec, requestedBy: 'alice' };
    const handle = await client.workflow.start(WORKFLOW_TYPE, { taskQueue: taskQueueFor(spec.pools.data), workflowId: uniqueId(`rec-${name}`), args: [input] });
    started.push(handle.workflowId);
    return handle;
  }
  /**
   * Waits until the run has nothing in flight (no workflow task, no activity): what it does next waits for
   * the input this recording sends. Inputs sent only then land at the same place in every recording of the
   * same code, so two recordings differ in shape only when the code does.
   */
  const settled = (handle: WorkflowHandle) =>
    waitFor(`${handle.workflowId} to settle`, 60_000, async () => {
      const { raw } = await handle.describe();
      return !raw.pendingWorkflowTask && (raw.pendingActivities ?? []).length === 0 ? true : undefined;
    }, 100);
  const atGate = async (handle: WorkflowHandle) => {
    await waitFor(`${handle.workflowId} at its gate`, 60_000, async () => ((await handle.query(progressQuery)).gate.status === 'waiting' ? true : undefined));
    await settled(handle);
  };
  const decide = (handle: WorkflowHandle, decision: 'approve' | 'reject', override?: boolean) =>
    handle.executeUpdate(approveDeploymentUpdate, { args: [{ decision, approver: 'bob', comment: `recorded ${decision}`, ...(override ? { override } : {}) }] });
  function expect<T>(what: string, actual: T, expected: T): void {
    if (actual !== expected) throw new Error(`recording ${what}: expected ${String(expected)}, got ${String(actual)}`);
  }
  const pipeline = (name: string, branch: string, handle: WorkflowHandle): Recorded => ({ name, branch, workflowId: handle.workflowId, workflowType: WORKFLOW_TYPE });
  const canary = { steps: [10, 50, 100], hold: '1s', checkEvery: '1s', minRequests: 20, maxErrorRate: 0.05, maxP95LatencyMs: 5000, maxNegativeFeedbackRate: 0.5 };

  /** Approves a run at its gate and checks how it ended. */
  async function approved(name: string, branch: string, spec: PipelineSpec, status: PipelineOutcome['status'] = 'deployed'): Promise<Recorded> {
    const handle = await start(name, spec);
    await atGate(handle);
    await decide(handle, 'approve');
    expect(name, ((await handle.result()) as PipelineOutcome).status, status);
    return pipeline(name, branch, handle);
  }

  async function canaryRun(name: string, variant: Variant, expected: CanaryOutcome['status'], branch: string): Promise<Recorded[]> {
    const handle = await start(`pipeline-${name}`, specOn(pools[variant], (s) => (s.deploy.canary = canary)));
    await atGate(handle);
    await decide(handle, 'approve');
    const outcome = (await handle.result()) as PipelineOutcome;
    expect(name, outcome.deploy?.canary?.status, expected);
    return [
      pipeline(`pipeline-${name}`, `approve, then a canary child that is ${expected}`, handle),
      { name, branch, workflowId: canaryWorkflowId(handle.workflowId), workflowType: CANARY_WORKFLOW_TYPE },
    ];
  }

  async function retrain(name: string, variant: Variant, expected: RetrainTriggerOutcome['decision'], branch: string): Promise<Recorded[]> {
    const triggerId = uniqueId('rec-trigger').toLowerCase();
    const input: RetrainTriggerInput = { triggerId, spec: specOn(pools[variant]), requestedBy: `trigger:${triggerId}`, overlap: 'SKIP' };
    const workflowId = uniqueId(`rec-${name}`);
    started.push(workflowId);
    // The check runs on the spec's data pool, as do the stages of the run it starts.
    const outcome: RetrainTriggerOutcome = await client.workflow.execute(RETRAIN_WORKFLOW_TYPE, { taskQueue: taskQueueFor(pools[variant]), workflowId, args: [input] });
    expect(name, outcome.decision, expected);
    if (outcome.runId) started.push(outcome.runId); // the run it started: terminated once recorded
    return [{ name, branch, workflowId, workflowType: RETRAIN_WORKFLOW_TYPE }];
  }

  async function evaluation(name: string, variant: Variant, branch: string): Promise<Recorded[]> {
    const spec = specOn(pools[variant], (s) => (s.test.suites = ['a', 'b'].map((n) => ({ name: n, source: { uri: '/dev/null', encoding: 'utf-8' }, metrics: ['exact_match'] }))));
    const input: EvaluationInput = { spec, modelVersionId: 'stub-v1', requestedBy: 'recorder' };
    const workflowId = uniqueId(`rec-${name}`);
    started.push(workflowId);
    const failed = await client.workflow
      .execute(EVALUATE_WORKFLOW_TYPE, { taskQueue: taskQueueFor(pools[variant]), workflowId, args: [input] })
      .then(() => false, (e: unknown) => e instanceof WorkflowFailedError);
    expect(name, failed, variant === 'failing');
    return [{ name, branch, workflowId, workflowType: EVALUATE_WORKFLOW_TYPE }];
  }

  return [
    async () => [await approved('pipeline-approve', 'approve: every stage, the gate, approval, deploy', specOn(pools.plain))],
    async () => {
      const handle = await start('pipeline-reject', specOn(pools.plain));
      await atGate(handle);
      await decide(handle, 'reject');
      expect('pipeline-reject', ((await handle.result()) as PipelineOutcome).status, 'rejected');
      return [pipeline('pipeline-reject', 'reject at the gate', handle)];
    },
    async () => {
      const handle = await start('pipeline-expire', specOn(pools.plain, (s) => (s.deploy.approvalTimeout = '2s')));
      expect('pipeline-expire', ((await handle.result()) as PipelineOutcome).status, 'expired');
      return [pipeline('pipeline-expire', 'the gate expires: nobody decided within approvalTimeout', handle)];
    },
    async () => {
      const handle = await start('pipeline-override', specOn(pools.champion));
      await atGate(handle);
      const receipt = await decide(handle, 'approve', true);
      expect('pipeline-override', receipt.override, true);
      expect('pipeline-override', ((await handle.result()) as PipelineOutcome).status, 'deployed');
      return [pipeline('pipeline-override', 'override: the serving model beats the challenger, approved with override', handle)];
    },
    async () => {
      const spec = specOn(pools.large, (s) => (s.data.shards = { bytes: 1024, parallel: 2 }));
      const run = await approved('pipeline-sharded', 'data larger than data.shards.bytes: clean and tokenize on five shards each, in child workflows; approved', spec);
      return [
        run,
        { name: 'clean-shards', branch: 'clean on five shards, two at a time, then the merge', workflowId: `${run.workflowId}-clean`, workflowType: CLEAN_SHARDS_WORKFLOW_TYPE },
        { name: 'tokenize-shards', branch: 'tokenize on five shards: the tokenizer once, the shards two at a time, then the merge', workflowId: `${run.workflowId}-tokenize`, workflowType: TOKENIZE_SHARDS_WORKFLOW_TYPE },
      ];
    },
    async () => [await approved('pipeline-sweep', 'learning-rate sweep: three trains and validates in parallel, the best continues; approved', specOn(pools.plain, (s) => (s.train.sweep = { learningRates: [0.003, 0.001, 0.01] })))],
    async () => [await approved('pipeline-rl', 'rlhf method rl: reward model, then RL; approved', specOn(pools.plain, (s) => (s.rlhf = { ...s.rlhf, method: 'rl' })))],
    async () => [await approved('pipeline-optimize', 'optimize: the GGUF exports scored after test, before the gate; approved', specOn(pools.plain, (s) => (s.optimize = { types: ['q8_0'], tolerance: 0.02 })))],
    async () => {
      const handle = await start('pipeline-label-wait', specOn(pools.plain, (s) => (s.rlhf = { ...s.rlhf, source: 'labels', labels: { ...s.rlhf.labels, required: 3, pairs: 5 } })));
      await waitFor('the label wait', 60_000, async () => ((await handle.query(progressQuery)).labels ? true : undefined));
      for (const labeled of [2, 2, 1, 3]) {
        await settled(handle);
        await handle.signal(labelsChangedSignal, { labeled });
      }
      await atGate(handle);
      await decide(handle, 'approve');
      expect('pipeline-label-wait', ((await handle.result()) as PipelineOutcome).status, 'deployed');
      return [pipeline('pipeline-label-wait', 'rlhf source labels: the durable wait for labels (signals, one late and repeated), then approved', handle)];
    },
    async () => {
      const handle = await start('pipeline-cancel', specOn(pools.plain));
      await atGate(handle);
      await handle.cancel();
      const err = await handle.result().then(() => undefined, (e: unknown) => e);
      expect('pipeline-cancel', err instanceof WorkflowFailedError, true);
      return [pipeline('pipeline-cancel', 'cancelled at the gate', handle)];
    },
    async () => {
      const handle = await start('pipeline-stage-failure', specOn(pools.failing));
      const err = await handle.result().then(() => undefined, (e: unknown) => e);
      expect('pipeline-stage-failure', err instanceof WorkflowFailedError, true);
      return [pipeline('pipeline-stage-failure', 'a non-retryable failure of the train stage', handle)];
    },
    () => canaryRun('canary-promote', 'plain', 'promoted', 'canary: every step healthy, promoted'),
    () => canaryRun('canary-rollback', 'breaking', 'rolled-back', 'canary: health breaks at step 2, rolled back'),
    async () => {
      const handle = await start('pipeline-canary-abort', specOn(pools.plain, (s) => (s.deploy.canary = { ...canary, hold: '1m', checkEvery: '1m' })));
      await atGate(handle);
      await decide(handle, 'approve');
      const child = client.workflow.getHandle(canaryWorkflowId(handle.workflowId));
      await waitFor('the canary at its first step', 60_000, async () => ((await child.query(canaryQuery).catch(() => undefined))?.weight === 10 ? true : undefined));
      await settled(child);
      await child.signal(abortCanarySignal, { by: 'carol', comment: 'recorded abort' });
      expect('canary-abort', ((await handle.result()) as PipelineOutcome).deploy?.canary?.decidedBy, 'carol');
      return [{ name: 'canary-abort', branch: 'canary: aborted by hand (signal) at step 1, rolled back', workflowId: child.workflowId, workflowType: CANARY_WORKFLOW_TYPE }];
    },
    () => retrain('retrain-start', 'retrain', 'start', 'retrain trigger: the check says start, a lifecyclePipeline child is started (ABANDON)'),
    () => retrain('retrain-unchanged', 'plain', 'unchanged', 'retrain trigger: the check finds nothing new, no run'),
    () => evaluation('evaluate-completed', 'plain', 'an on-demand evaluation of two suites completes'),
    () => evaluation('evaluate-failed', 'failing', 'an evaluation fails for good and is recorded failed'),
  ];
}

main().catch((err) => {
  console.error(err);
  console.error(`\n${RECORD_COMMAND} needs a running stack (npm start, or node_modules/.bin/tsx infra/src/stack.ts up --core).`);
  process.exit(1);
});
