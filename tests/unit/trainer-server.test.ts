/**
 * The worker's pre-started trainer (activities/src/trainer-server.ts): jobs start through it, a dead server is
 * replaced by the next job, and a server that cannot start leaves jobs to plain processes. The forked jobs'
 * own behaviour (events, exit codes, kill with the client) is pytest's (services/trainer/tests/test_prefork.py);
 * a killed or hung trainer under a real worker is the fault suite's.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { TrainerServer } from '@tempered/activities';
import { childEnv } from '@tempered/config';
import { cfg } from '../support';

/** Runs `sft` with an empty config (refused after the imports) and returns its exit code and seconds taken. */
function badSft(prefix: string[]): { status: number | null; seconds: number; event: any } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tempered-server-test-'));
  writeFileSync(path.join(dir, 'config.json'), '{}');
  const t0 = performance.now();
  const r = spawnSync(cfg.python, [...prefix, 'sft', '--config', 'config.json'], { cwd: dir, env: childEnv(cfg), encoding: 'utf8' });
  return { status: r.status, seconds: (performance.now() - t0) / 1000, event: JSON.parse(r.stdout.trim().split('\n').at(-1)!) };
}

test('jobs fork from the server once it is up, and a server that died is replaced', { timeout: 120_000 }, async () => {
  const server = new TrainerServer(cfg);
  try {
    assert.deepEqual(server.command(), ['-m', 'tempered_trainer'], 'no job waits for the server to start');
    await server.ready();
    const prefix = server.command();
    assert.deepEqual(prefix.slice(0, 3), ['-m', 'tempered_trainer.prefork', 'run']);
    const forked = badSft(prefix);
    assert.equal(forked.status, 2, 'a bad config is bad input, as from a plain trainer');
    assert.equal(forked.event.event, 'error');
    assert.match(forked.event.reason, /sft config/);
    assert.ok(forked.seconds < 2, `a forked job took ${forked.seconds.toFixed(2)} s`);

    const pid = server.pid!;
    process.kill(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(server.command(), ['-m', 'tempered_trainer'], 'a plain process while the server is replaced');
    await server.ready();
    assert.ok(server.pid && server.pid !== pid, 'a new server was started');
    assert.equal(badSft(server.command()).status, 2);
  } finally {
    server.close();
  }
});

test('when the server cannot start, jobs start as plain trainer processes', async () => {
  const server = new TrainerServer({ ...cfg, python: '/nonexistent/python' });
  assert.equal(await server.ready(), undefined);
  assert.deepEqual(server.command(), ['-m', 'tempered_trainer']);
  assert.equal(server.pid, undefined, 'and it is not tried again for every job');
});
