/**
 * Benchmark: the latency the gateway adds in front of a model server. One tiny model is served by the Python
 * trainer's `serve`; the same requests go to it directly (the baseline) and through a gateway process routed
 * to it (normalization, routing, blocklist, metrics, the batched request record, one log line). Same client,
 * same kept-alive connections, same load, in one run: blocks of requests alternate between the two paths
 * (ABBA order, so drift and warm-up hit both alike). Needs the bench stack's PostgreSQL (infra/bench.sh).
 *
 * Writes results/gateway.json: client-side latency percentiles of each path and their differences.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setRoutes } from '@tempered/db';
import { cfg, db, freePort, repoRoot, trainerCommand, trainerEnv, trainTinyModel, uniqueId } from '../support';

const REQUESTS = Number(process.env.BENCH_GATEWAY_REQUESTS ?? 1000); // per path and load level
const BLOCK = 100;
const LOADS = [1, 4]; // requests in flight
const BODY = { prompt: 'reverse 3 9 1 4', max_tokens: 1, temperature: 0 };


function waitUntil(what: string, probe: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return (async () => {
    while (!(await probe().catch(() => false))) {
      if (Date.now() > deadline) throw new Error(`${what} did not come up in ${timeoutMs / 1000}s`);
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
}

// One client for both paths: node:http with kept-alive connections, as a production caller would use.
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
function post(url: URL, payload: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`${url} answered ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

async function block(url: URL, payload: string, n: number, inFlight: number, into: number[]): Promise<void> {
  let left = n;
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (left-- > 0) into.push(await post(url, payload));
  }));
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
function summary(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const r = (v: number) => Math.round(v * 1000) / 1000;
  return { n: s.length, p50: r(pct(s, 50)), p90: r(pct(s, 90)), p99: r(pct(s, 99)), mean: r(s.reduce((a, b) => a + b, 0) / s.length), max: r(s.at(-1)!) };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tempered-gateway-bench-'));
  /** Stops what this run started, in reverse order. */
  const stops: Array<() => void> = [];
  const stop = (child: ChildProcess, group = false) => () => {
    try {
      process.kill(group ? -child.pid! : child.pid!, 'SIGTERM');
    } catch {
      /* gone */
    }
  };
  const database = db();
  const name = uniqueId('bench-gw');
  const version = `${name}-v1`;
  try {
    // The tiny model of the integration test: a few seconds of training, milliseconds per request.
    const sft = await trainTinyModel(dir);
    const exported = await trainerCommand('export', { checkpoint: sft.checkpoints.at(-1), output_dir: path.join(dir, 'model') }, dir);

    const modelPort = await freePort();
    writeFileSync(path.join(dir, 'serve.json'), JSON.stringify({ model: exported.model_tar, host: '127.0.0.1', port: modelPort, model_name: version, device: 'cpu' }));
    const server = spawn(cfg.python, ['-m', 'tempered_trainer', 'serve', '--config', path.join(dir, 'serve.json')], { env: trainerEnv, stdio: 'ignore' });
    stops.push(stop(server));
    const direct = `http://127.0.0.1:${modelPort}`;
    await waitUntil('the model server', async () => (await fetch(`${direct}/health`)).ok);

    await database.insertInto('model_versions')
      .values({ id: version, name, version: 1, run_id: uniqueId('bench-gw-run'), model_uri: exported.model_tar, sha256: 'bench', metrics: '{}' })
      .execute();
    await setRoutes(database, name, [{ modelVersionId: version, endpoint: direct, weight: 100 }]);

    const gatewayPort = await freePort();
    mkdirSync(path.join(cfg.dataDir, 'logs'), { recursive: true });
    const log = openSync(path.join(cfg.dataDir, 'logs', 'gateway-bench.log'), 'a');
    const blocklist = Array.from({ length: 20 }, (_, i) => `blockedword${i}`).join(',');
    const gateway = spawn(path.join(repoRoot, 'node_modules', '.bin', 'tsx'), [path.join(repoRoot, 'services', 'gateway', 'src', 'main.ts')], {
      env: { ...process.env, TEMPERED_GATEWAY_PORT: String(gatewayPort), TEMPERED_BLOCKLIST: blocklist },
      stdio: ['ignore', log, log],
      detached: true,
    });
    stops.push(stop(gateway, true)); // tsx runs the gateway as its child: signal the group
    const via = `http://127.0.0.1:${gatewayPort}`;
    await waitUntil('the gateway', async () => (await fetch(`${via}/v1/models`)).ok && JSON.stringify(await (await fetch(`${via}/v1/models`)).json()).includes(version));

    const directUrl = new URL(`${direct}/v1/completions`);
    const gatewayUrl = new URL(`${via}/v1/completions`);
    const directBody = JSON.stringify({ model: version, ...BODY });
    const gatewayBody = JSON.stringify({ model: name, ...BODY });

    const loadAverageAtStart = os.loadavg()[0];
    const loads = [];
    for (const inFlight of LOADS) {
      // Warm-up: connections, the model's first forwards, the gateway's JIT.
      await block(directUrl, directBody, 100, inFlight, []);
      await block(gatewayUrl, gatewayBody, 100, inFlight, []);
      const d: number[] = [];
      const g: number[] = [];
      for (let i = 0; i < REQUESTS / BLOCK; i++) {
        const [first, second] = i % 4 === 0 || i % 4 === 3 ? ['d', 'g'] : ['g', 'd'];
        for (const which of [first, second]) await (which === 'd' ? block(directUrl, directBody, BLOCK, inFlight, d) : block(gatewayUrl, gatewayBody, BLOCK, inFlight, g));
      }
      const ds = summary(d);
      const gs = summary(g);
      const added = { p50: Math.round((gs.p50 - ds.p50) * 1000) / 1000, p90: Math.round((gs.p90 - ds.p90) * 1000) / 1000, p99: Math.round((gs.p99 - ds.p99) * 1000) / 1000, mean: Math.round((gs.mean - ds.mean) * 1000) / 1000 };
      loads.push({ inFlight, directMs: ds, gatewayMs: gs, addedMs: added });
      console.log(`in flight ${inFlight}: direct p50 ${ds.p50} ms p99 ${ds.p99} ms; gateway p50 ${gs.p50} ms p99 ${gs.p99} ms; added p50 ${added.p50} ms p99 ${added.p99} ms`);
    }

    // The gateway's own view: its time around the upstream call, from its histograms.
    const metrics = await (await fetch(`${via}/metrics`)).text();
    const sum = (metric: string) => Number(new RegExp(`^${metric}\\{model="${name}",version="${version}"\\} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN);
    const served = sum('tempered_gateway_request_duration_seconds_count');
    const insideMs = ((sum('tempered_gateway_request_duration_seconds_sum') - sum('tempered_gateway_upstream_duration_seconds_sum')) / served) * 1000;
    await new Promise((r) => setTimeout(r, 500)); // the last batch of request records
    const recorded = await database.selectFrom('gateway_requests').select((eb) => eb.fn.countAll<number>().as('n')).where('model_name', '=', name).executeTakeFirstOrThrow();

    const out = {
      benchmark: 'gateway added latency: the same completion requests to the model server directly and through the gateway',
      machine: `${os.cpus().length} cores, node ${process.version}`,
      loadAverage: { atStart: Math.round(loadAverageAtStart * 100) / 100, atEnd: Math.round(os.loadavg()[0] * 100) / 100 },
      upstream: `python -m tempered_trainer serve, tiny GPT-2 (1 layer, 32 wide) on CPU, ${JSON.stringify(BODY)}`,
      gateway: 'separate process via tsx, NFKC normalization, sticky weighted routing, 20-word blocklist, metrics, batched request records, one log line per request',
      method: `per load level, ${REQUESTS} requests per path in blocks of ${BLOCK}, alternating ABBA; client-side latency over kept-alive node:http connections; 100 warm-up requests per path first`,
      loads,
      gatewayInternalMeanMs: Math.round(insideMs * 1000) / 1000,
      requestsRecorded: Number(recorded.n),
      note: 'client, gateway, model server and PostgreSQL share the machine (and anything else running on it: see loadAverage); the model server handles one forward at a time, so with 4 in flight both paths queue there',
      at: new Date().toISOString(),
    };
    const resultsDir = path.join(__dirname, 'results');
    mkdirSync(resultsDir, { recursive: true });
    writeFileSync(path.join(resultsDir, 'gateway.json'), `${JSON.stringify(out, null, 2)}\n`);
    console.log(JSON.stringify(out, null, 2));
  } finally {
    for (const s of stops.reverse()) s();
    await setRoutes(database, name, []).catch(() => {});
    await database.destroy();
    agent.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
