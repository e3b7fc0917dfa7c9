/**
 * Benchmark: what Temporal orchestration costs per stage. The same stand-in activities (they return at
 * once) run twice in one process: called directly in pipeline order (the baseline), and as the
 * lifecyclePipeline workflow on the real dev server through the gate and its approval. The difference,
 * divided by the activities the workflow runs, is the overhead a stage pays for durability.
 *
 * Run with `npm run bench` (the stack must be up; infra/bench.sh starts it). Writes results/orchestration.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { NativeConnection, Worker } from '@temporalio/worker';
import type { PipelineInput } from '@tempered/contract';
import { approveDeploymentUpdate, progressQuery, taskQueueFor, WORKFLOW_TYPE } from '@tempered/workflows';
import { cfg, demoSpec, quietWorkerLogs, temporalClient, uniqueId, waitFor } from '../support';
import { stubActivities } from '../workflows/stubs';

const RUNS = Number(process.env.BENCH_RUNS ?? 10);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  quietWorkerLogs();
  const { activities, log } = stubActivities();
  const spec = demoSpec();

  // Baseline: the same calls, no orchestration.
  const direct: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const a = activities as any;
    for (const name of ['recordRun', 'recordStage', 'ingest', 'recordStage', 'clean', 'recordStage', 'tokenize', 'recordStage', 'split', 'recordStage', 'train', 'recordStage', 'validate', 'recordStage', 'rlhf', 'recordStage', 'test', 'recordStage', 'recordApproval', 'deploy', 'recordRun']) {
      await a[name]({ runId: 'bench', spec, stage: 'ingest', status: 'running', decision: 'approve', model: { uri: 's3://stub/model/0' } });
    }
    direct.push(performance.now() - t0);
  }

  const pool = uniqueId('bench').toLowerCase();
  spec.pools = { data: pool, train: pool, rlhf: pool, eval: pool };
  const connection = await NativeConnection.connect({ address: cfg.temporal.address });
  const worker = await Worker.create({ connection, taskQueue: taskQueueFor(pool), workflowsPath: require.resolve('@tempered/workflows/workflows'), activities });
  const { client, close } = await temporalClient();
  const orchestrated: number[] = [];
  let activityCount = 0;
  await worker.runUntil(async () => {
    for (let i = 0; i < RUNS; i++) {
      const before = log.calls.length + log.stages.length + log.runs.length + log.approvals.length;
      const t0 = performance.now();
      const input: PipelineInput = { spec, requestedBy: 'bench' };
      const handle = await client.workflow.start(WORKFLOW_TYPE, { taskQueue: taskQueueFor(pool), workflowId: uniqueId('bench'), args: [input] });
      await waitFor('gate', 60_000, async () => ((await handle.query(progressQuery)).gate.status === 'waiting' ? true : undefined), 5);
      await handle.executeUpdate(approveDeploymentUpdate, { args: [{ decision: 'approve', approver: 'reviewer' }] });
      await handle.result();
      orchestrated.push(performance.now() - t0);
      activityCount = log.calls.length + log.stages.length + log.runs.length + log.approvals.length - before;
    }
  });
  await close();
  await connection.close();

  const result = {
    benchmark: 'orchestration overhead per activity',
    machine: `${require('node:os').cpus().length} cores, node ${process.version}`,
    runs: RUNS,
    activitiesPerRun: activityCount,
    baselineDirectMs: { median: median(direct) },
    temporalPipelineMs: { median: median(orchestrated), min: Math.min(...orchestrated), max: Math.max(...orchestrated) },
    overheadPerActivityMs: (median(orchestrated) - median(direct)) / activityCount,
    note: 'includes the gate: a query poll every 5 ms and the approval Update round trip',
    at: new Date().toISOString(),
  };
  const out = path.join(__dirname, 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, 'orchestration.json'), `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result, null, 2));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
