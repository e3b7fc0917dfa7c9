/**
 * Benchmark: ingest and clean on a ~1 GB input, in-process (the stage cores, activities/src/ingest-core.ts and
 * clean-core.ts, without S3 around them): throughput in MB of input per second and peak memory (RSS), for plain
 * JSONL and for the same file gzip-compressed. The baseline in the same run is a bare line scan of the same file
 * (read, decode, split into lines: what any JSONL reader must do), so the figures say what parsing, mapping,
 * cleaning and writing cost on top of it.
 *
 * The input is generated on disk in a temp directory from a seeded generator: chat-like turns of 150–600
 * characters with some full-width text, e-mail addresses, control characters and 2% exact duplicates, so every
 * clean rule has work to do. BENCH_DATA_MB sets the size (default 1024). Writes results/data_ingest.json.
 * Needs no stack: run it alone with `npx tsx tests/bench/data_ingest.bench.ts`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { cleanFile } from '../../activities/src/clean-core';
import { ingestFiles, type IngestSource } from '../../activities/src/ingest-core';
import { readLines } from '../../activities/src/records';
import { validateSpec } from '@tempered/spec';
import { generateCorpus } from './corpus';

const TARGET_MB = Number(process.env.BENCH_DATA_MB ?? 1024);
const MB = 1024 * 1024;
const round = (x: number, digits = 1) => Number(x.toFixed(digits));

/** Peak RSS while `work` runs, sampled every 50 ms (the process's own high-water mark covers every phase at once). */
async function measured<T>(work: () => Promise<T>): Promise<{ value: T; seconds: number; peakRssMB: number; startRssMB: number }> {
  (globalThis as { gc?: () => void }).gc?.();
  const startRss = process.memoryUsage.rss();
  let peak = startRss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 50);
  const t0 = performance.now();
  try {
    const value = await work();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { value, seconds: (performance.now() - t0) / 1000, peakRssMB: round(peak / MB), startRssMB: round(startRss / MB) };
  } finally {
    clearInterval(timer);
  }
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tempered-bench-data-'));
  try {
    const plain = path.join(dir, 'input.jsonl');
    const gz = path.join(dir, 'input.jsonl.gz');
    console.log(`generating ~${TARGET_MB} MB of JSONL in ${dir}`);
    const input = await generateCorpus(plain, TARGET_MB * MB);
    await pipeline(fs.createReadStream(plain), zlib.createGzip({ level: 6 }), fs.createWriteStream(gz));
    const gzBytes = fs.statSync(gz).size;
    console.log(`${input.lines} lines, ${round(input.bytes / MB)} MB; gzip ${round(gzBytes / MB)} MB`);
    const inputMB = input.bytes / MB;

    const baseline = await measured(async () => {
      let n = 0;
      for await (const _ of readLines(plain)) n++;
      return n;
    });
    console.log(`baseline line scan: ${round(inputMB / baseline.seconds)} MB/s`);

    const spec = validateSpec({ apiVersion: 'tempered/v1', name: 'bench', data: { sources: [{ uri: 'input.jsonl' }] }, rlhf: { method: 'none' } });
    const fields = spec.data.fields;
    const results: Record<string, unknown> = {};
    for (const [name, source] of [
      ['jsonl', { path: plain, label: 'input.jsonl', format: 'jsonl', encoding: 'utf-8' }],
      ['jsonl.gz', { path: gz, label: 'input.jsonl.gz', format: 'jsonl', compression: 'gzip', encoding: 'utf-8' }],
    ] as Array<[string, IngestSource]>) {
      const out = { datasetPath: path.join(dir, `${name}-dataset.jsonl`), quarantinePath: path.join(dir, `${name}-quarantine.jsonl`) };
      const ingest = await measured(() => ingestFiles([source], fields, out));
      const cleanOut = path.join(dir, `${name}-cleaned.jsonl`);
      const clean = await measured(() => cleanFile(out.datasetPath, cleanOut, spec.clean));
      results[name] = {
        ingest: { seconds: round(ingest.seconds), MBps: round(inputMB / ingest.seconds), peakRssMB: ingest.peakRssMB, startRssMB: ingest.startRssMB, kept: ingest.value.kept, quarantined: ingest.value.quarantined },
        clean: { seconds: round(clean.seconds), MBps: round(inputMB / clean.seconds), peakRssMB: clean.peakRssMB, startRssMB: clean.startRssMB, kept: clean.value.kept, removed: clean.value.removed },
      };
      console.log(`${name}: ingest ${round(inputMB / ingest.seconds)} MB/s, peak RSS ${ingest.peakRssMB} MB; clean ${round(inputMB / clean.seconds)} MB/s, peak RSS ${clean.peakRssMB} MB (kept ${clean.value.kept})`);
      for (const f of [out.datasetPath, out.quarantinePath, cleanOut]) fs.rmSync(f, { force: true });
    }

    const report = {
      date: new Date().toISOString(),
      machine: `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${round(os.totalmem() / 1024 ** 3)} GiB`,
      node: process.version,
      input: { MB: round(inputMB), lines: input.lines, gzipMB: round(gzBytes / MB) },
      baselineLineScan: { seconds: round(baseline.seconds), MBps: round(inputMB / baseline.seconds), peakRssMB: baseline.peakRssMB },
      ...results,
      processMaxRssMB: round((process.resourceUsage().maxRSS * 1024) / MB),
    };
    const outFile = path.join(__dirname, 'results', 'data_ingest.json');
    fs.writeFileSync(outFile, JSON.stringify(report, null, 2) + '\n');
    console.log(`wrote ${path.relative(process.cwd(), outFile)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main().catch((error) => {
  console.error(error);
  process.exit(1);
});
