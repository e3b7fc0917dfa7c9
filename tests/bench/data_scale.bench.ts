/**
 * Benchmark: the data stages scaled out (issue 11). On a generated corpus (tests/bench/corpus.ts; BENCH_SCALE_MB,
 * default 1024), ingest in-process, then clean and tokenize on shards of data.shards.bytes (64 MiB) through their
 * child workflows on the bench stack, by one worker process of the data pool and then by two; MB of input per
 * second for each, and each worker's peak RSS (VmHWM).
 *
 * Beside them in the same run, the baseline: the Rust tokenizer's batch encode (`Tokenizer.encode_batch`, all
 * threads; and `encode_batch_fast`, without character offsets) called directly on the same pieces of text,
 * against the trainer's own encoding of the records (tempered_trainer/tokenize.py `encode_records`, "tokenize
 * alone"), all on the tokenizer the stage trained.
 * Goals: the tokenize stage at >= 0.8 of the direct batch encode's MB/s, tokenize alone at >= 1.0.
 *
 * Needs the bench stack (npm run bench starts it). Writes results/data_scale.json.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, TrainerSlots } from '@tempered/activities';
import { downloadLines } from '../../activities/src/line-ranges';
import { type CleanResult, type IngestResult, shardRanges, type TokenizeResult } from '@tempered/contract';
import { validateSpec } from '@tempered/spec';
import { CLEAN_SHARDS_WORKFLOW_TYPE, CONTROL_TASK_QUEUE, TOKENIZE_SHARDS_WORKFLOW_TYPE } from '@tempered/workflows';
import { cfg, db, repoRoot, startWorkerProcess, store, temporalClient, uniqueId } from '../support';
import { generateCorpus } from './corpus';

const TARGET_MB = Number(process.env.BENCH_SCALE_MB ?? 1024);
const BASELINE_MB = 256;
const MB = 1024 * 1024;
const round = (x: number, digits = 2) => Number(x.toFixed(digits));

/** Peak resident memory of a process and its children so far, in MB (VmHWM of each). */
function peakRssMB(pid: number): number {
  const pids = [pid, ...execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number)].filter(Boolean);
  let total = 0;
  for (const p of pids) {
    try {
      const hwm = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
      total = Math.max(total, Number(hwm?.[1] ?? 0) / 1024);
    } catch {
      /* gone */
    }
  }
  return round(total, 0);
}

async function main() {
  const database = db();
  const { client, close } = await temporalClient();
  const dir = path.join(cfg.dataDir, 'uploads', 'bench-scale');
  fs.mkdirSync(dir, { recursive: true });
  const corpus = path.join(dir, 'corpus.jsonl');
  try {
    console.log(`generating ~${TARGET_MB} MB of JSONL in ${dir}`);
    const input = await generateCorpus(corpus, TARGET_MB * MB);
    const inputMB = input.bytes / MB;
    const runId = uniqueId('bench-scale');
    await database.insertInto('runs').values({ id: runId, name: 'bench-scale', spec: '{}', status: 'running', requested_by: 'bench' }).execute();
    const specOn = (pool: string) => {
      const spec = validateSpec({ apiVersion: 'tempered/v1', name: 'bench-scale', data: { sources: [{ uri: 'corpus.jsonl' }] }, rlhf: { method: 'none' }, cache: false });
      spec.pools = { ...spec.pools, data: pool };
      return spec;
    };

    const activities = createActivities({ cfg, db: database, store: store(), slots: TrainerSlots.unlimited(), stageCache: false });
    const t0 = performance.now();
    const ingested: IngestResult = await new MockActivityEnvironment().run(activities.ingest, { runId, spec: specOn('cpu'), specDir: dir });
    const ingestSeconds = (performance.now() - t0) / 1000;
    // Ingest runs in this process, which does nothing else yet (the corpus was generated streaming).
    const ingestPeakRssMB = round(process.resourceUsage().maxRSS / 1024, 0);
    console.log(`ingest: ${round(inputMB / ingestSeconds)} MB/s (${ingested.counts.kept} records)`);

    const rounds: Record<string, unknown> = {};
    let tokenized: TokenizeResult | undefined;
    let cleaned: CleanResult | undefined;
    for (const count of [1, 2]) {
      const pool = uniqueId(`bench-scale-${count}`).toLowerCase();
      const workers = await Promise.all(Array.from({ length: count }, () => startWorkerProcess([pool])));
      try {
        const spec = specOn(pool);
        const run = async <T>(type: string, args: object): Promise<{ value: T; seconds: number }> => {
          const start = performance.now();
          const value = (await client.workflow.execute(type, { taskQueue: CONTROL_TASK_QUEUE, workflowId: uniqueId(`${runId}-${type}`), args: [args] })) as T;
          return { value, seconds: (performance.now() - start) / 1000 };
        };
        const plan = (bytes: number) => ({ ranges: shardRanges(bytes, spec.data.shards.bytes), parallel: spec.data.shards.parallel });
        const c = await run<CleanResult>(CLEAN_SHARDS_WORKFLOW_TYPE, { runId, spec, dataset: ingested.dataset, plan: plan(ingested.dataset.bytes) });
        const t = await run<TokenizeResult>(TOKENIZE_SHARDS_WORKFLOW_TYPE, { runId, spec, cleaned: c.value.cleaned, plan: plan(c.value.cleaned.bytes) });
        if (cleaned && c.value.cleaned.sha256 !== cleaned.cleaned.sha256) throw new Error('one and two workers cleaned to different bytes');
        if (tokenized && t.value.encoded.sha256 !== tokenized.encoded.sha256) throw new Error('one and two workers encoded different shards');
        cleaned = c.value;
        tokenized = t.value;
        rounds[`${count} worker${count > 1 ? 's' : ''}`] = {
          shards: { clean: plan(ingested.dataset.bytes).ranges.length, tokenize: plan(c.value.cleaned.bytes).ranges.length },
          clean: { seconds: round(c.seconds, 1), MBps: round(inputMB / c.seconds) },
          tokenize: { seconds: round(t.seconds, 1), MBps: round(c.value.cleaned.bytes / MB / t.seconds), cleanedMB: round(c.value.cleaned.bytes / MB, 1) },
          ingestCleanTokenize: { seconds: round(ingestSeconds + c.seconds + t.seconds, 1), MBps: round(inputMB / (ingestSeconds + c.seconds + t.seconds)) },
          workerPeakRssMB: workers.map((w) => peakRssMB(w.pid!)),
        };
        console.log(`${count} worker(s): ${JSON.stringify(rounds[`${count} worker${count > 1 ? 's' : ''}`])}`);
      } finally {
        for (const w of workers) if (w.pid) process.kill(-w.pid, 'SIGTERM');
      }
    }

    // Tokenize alone against the Rust tokenizer's batch encode, on the cleaned records and the trained tokenizer.
    // On the first BASELINE_MB of the cleaned records at most: a ratio of speeds needs no more, and the direct
    // batch encode holds every token's offsets in memory at once.
    const local = await downloadLines(store(), cleaned!.cleaned, [{ start: 0, end: Math.min(cleaned!.cleaned.bytes, BASELINE_MB * MB) }], path.join(dir, 'cleaned.jsonl'));
    const tokenizerPath = path.join(dir, 'tokenizer.json');
    await store().download(tokenized!.tokenizer, tokenizerPath);
    const script = `
import json, sys, time
from tokenizers import Tokenizer
from tempered_trainer.template import PLAIN, record_segments
from tempered_trainer.tokenize import encode_records, read_records
tok = Tokenizer.from_file(sys.argv[2])
records = read_records(sys.argv[1])
texts = [t for r in records for t, _ in record_segments(PLAIN, r)]
mb = sum(len(t.encode()) for t in texts) / 2**20
t0 = time.perf_counter(); tok.encode_batch(texts, add_special_tokens=False); direct = time.perf_counter() - t0
t0 = time.perf_counter(); tok.encode_batch_fast(texts, add_special_tokens=False); fast = time.perf_counter() - t0
t0 = time.perf_counter(); encode_records(tok, records, PLAIN); ours = time.perf_counter() - t0
print(json.dumps({"textMB": mb, "directSeconds": direct, "fastSeconds": fast, "oursSeconds": ours}))
`;
    const python = cfg.python;
    const measured = JSON.parse(execFileSync(python, ['-c', script, local, tokenizerPath], { encoding: 'utf8', cwd: path.join(repoRoot, 'services', 'trainer'), maxBuffer: 1 << 20 }).trim().split('\n').at(-1)!);
    const directMBps = measured.textMB / measured.directSeconds;
    const oursMBps = measured.textMB / measured.oursSeconds;
    const cleanedMB = cleaned!.cleaned.bytes / MB;
    const stageMBps = (key: string) => cleanedMB / ((rounds[key] as { tokenize: { seconds: number } }).tokenize.seconds);
    const baseline = {
      textMB: round(measured.textMB, 1),
      rustBatchEncode: { seconds: round(measured.directSeconds, 1), MBps: round(directMBps) },
      // The same without character offsets, which the trainer asks for since nothing reads them.
      rustBatchEncodeFast: { seconds: round(measured.fastSeconds, 1), MBps: round(measured.textMB / measured.fastSeconds) },
      tokenizeAlone: {
        seconds: round(measured.oursSeconds, 1),
        MBps: round(oursMBps),
        ofRust: round(oursMBps / directMBps),
        ofRustFast: round(measured.fastSeconds / measured.oursSeconds),
        goal: 1.0,
      },
      // The stage's MB are the cleaned JSONL's (keys and JSON too), the baseline's the text pieces alone.
      stageOfRust: { '1 worker': round(stageMBps('1 worker') / directMBps), '2 workers': round(stageMBps('2 workers') / directMBps), goal: 0.8 },
    };
    console.log(`baseline: ${JSON.stringify(baseline)}`);
    const report = {
      date: new Date().toISOString(),
      machine: `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${round(os.totalmem() / 1024 ** 3, 1)} GiB`,
      input: { MB: round(inputMB, 1), lines: input.lines, records: ingested.counts.kept },
      ingest: { seconds: round(ingestSeconds, 1), MBps: round(inputMB / ingestSeconds), peakRssMB: ingestPeakRssMB },
      ...rounds,
      twoWorkersSpeedup: {
        clean: round((rounds['1 worker'] as any).clean.seconds / (rounds['2 workers'] as any).clean.seconds),
        tokenize: round((rounds['1 worker'] as any).tokenize.seconds / (rounds['2 workers'] as any).tokenize.seconds),
      },
      baseline,
    };
    const outFile = path.join(__dirname, 'results', 'data_scale.json');
    fs.writeFileSync(outFile, JSON.stringify(report, null, 2) + '\n');
    console.log(`wrote ${path.relative(process.cwd(), outFile)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    await close();
    await database.destroy();
  }
}

void main().catch((error) => {
  console.error(error);
  process.exit(1);
});
