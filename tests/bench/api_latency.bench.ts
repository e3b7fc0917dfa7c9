/**
 * Benchmark: API latency of the runs list under a short load from a second process. The API runs as its
 * own process (the stack's); this process is the client. With a few hundred runs in the table, it holds
 * CONCURRENCY requests in flight for DURATION seconds against `GET /api/runs?limit=50` (authenticated, one
 * database query), and the same load against `GET /healthz` (no auth, no database) as the baseline, in
 * alternating phases of one run. Writes results/api_latency.json with p50/p99 and throughput of both.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cfg, db, tokenOf, uniqueId } from '../support';

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const PHASE_SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const PHASES = 2; // per route, alternating
const SEEDED_RUNS = 300;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function load(url: string, headers: Record<string, string>, seconds: number): Promise<number[]> {
  const latencies: number[] = [];
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        const res = await fetch(url, { headers });
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`${url}: ${res.status}`);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return latencies;
}

async function main(): Promise<void> {
  const database = db();
  const prefix = uniqueId('bench-api');
  await database
    .insertInto('runs')
    .values(Array.from({ length: SEEDED_RUNS }, (_, i) => ({ id: `${prefix}-${i}`, name: 'bench', spec: '{}', status: i % 3 ? 'deployed' : 'failed', requested_by: 'operator' })))
    .execute();
  try {
    const auth = { authorization: `Bearer ${tokenOf('operator')}` };
    const routes = { runsList: `${cfg.api.url}/api/runs?limit=50`, healthz: `${cfg.api.url}/healthz` };
    await load(routes.runsList, auth, 1); // warm-up: connections, query plans, the token cache
    const samples: Record<keyof typeof routes, number[]> = { runsList: [], healthz: [] };
    for (let phase = 0; phase < PHASES; phase++) {
      samples.healthz.push(...(await load(routes.healthz, {}, PHASE_SECONDS)));
      samples.runsList.push(...(await load(routes.runsList, auth, PHASE_SECONDS)));
    }
    const summary = (xs: number[]) => ({
      requests: xs.length,
      p50Ms: +pct(xs, 50).toFixed(2),
      p99Ms: +pct(xs, 99).toFixed(2),
      perSecond: Math.round(xs.length / (PHASES * PHASE_SECONDS)),
    });
    const result = {
      benchmark: 'API latency under load from a second process',
      machine: `${os.cpus().length} cores, node ${process.version}`,
      load: { concurrency: CONCURRENCY, seconds: PHASES * PHASE_SECONDS, seededRuns: SEEDED_RUNS, pageSize: 50 },
      runsList: summary(samples.runsList),
      baselineHealthz: summary(samples.healthz),
      date: new Date().toISOString(),
    };
    console.log(JSON.stringify(result, null, 2));
    const out = path.join(__dirname, 'results');
    mkdirSync(out, { recursive: true });
    writeFileSync(path.join(out, 'api_latency.json'), `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await database.deleteFrom('runs').where('id', 'like', `${prefix}-%`).execute();
    await database.destroy();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
