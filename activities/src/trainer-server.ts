/**
 * The pre-started trainer of one worker process (services/trainer/tempered_trainer/prefork.py): a Python process
 * that has imported torch, transformers, peft and trl once and forks a child per job, so a job starts working in
 * a tenth of a second instead of paying ~5 CPU-seconds of imports. Started on the first job (a worker that only
 * runs data stages never pays for it), restarted when it has died; when it cannot start, jobs fall back to a
 * plain `python -m tempered_trainer` process, so this only ever makes jobs faster. A job never waits for the
 * server: while it starts, jobs start as plain processes.
 *
 * A job is started through the prefork client (`tempered_trainer.prefork run SOCKET ...`), which stands for the
 * job towards the activity: its stdio are the job's, its exit code is the job's, and killing its process group
 * kills the job (the server watches the client's connection).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import type { Socket } from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { childEnv, type Config } from '@tempered/config';

/** Unix socket paths are limited to 107 bytes; a deep data directory falls back to the temp directory. */
const MAX_SOCKET_PATH = 100;

export class TrainerServer {
  private child: ChildProcess | undefined;
  private starting: Promise<string | undefined> | undefined;
  /** The socket of a server that is up and answering; unset while one starts or after it died. */
  private socket: string | undefined;
  /** Set when a start failed: jobs then start as plain processes for the rest of this worker's life. */
  private unavailable = false;

  constructor(private readonly cfg: Config) {}

  /**
   * The argv prefix that starts a trainer command now: forked from the server when it is up, else a plain
   * process (and the server is started for the jobs after this one). Never waits, so no job's first heartbeat
   * comes later than it would without a server.
   */
  command(): string[] {
    if (this.socket && this.pid !== undefined) return ['-m', 'tempered_trainer.prefork', 'run', this.socket];
    void this.ready();
    return ['-m', 'tempered_trainer'];
  }

  /** Starts the server unless it runs; resolves to its socket once it answers, undefined when it cannot start. */
  ready(): Promise<string | undefined> {
    if (this.unavailable) return Promise.resolve(undefined);
    if (!this.starting || this.pid === undefined) {
      this.socket = undefined;
      this.starting = this.start(); // the first call, or the server died since
    }
    return this.starting;
  }

  private start(): Promise<string | undefined> {
    mkdirSync(this.cfg.workDir, { recursive: true, mode: 0o700 });
    let socket = path.join(this.cfg.workDir, `trainer-${process.pid}.sock`);
    if (socket.length > MAX_SOCKET_PATH) socket = path.join(os.tmpdir(), `tempered-trainer-${process.pid}.sock`);
    // stdin stays a pipe: the server exits when it closes, i.e. when this worker is gone.
    const child = spawn(this.cfg.python, ['-m', 'tempered_trainer.prefork', 'serve', socket], {
      stdio: ['pipe', 'pipe', 'pipe'],
      // NVML answers any "is CUDA available" asked while importing, so that nothing creates a CUDA context a
      // forked job could not use (the server also checks that none was made).
      env: childEnv(this.cfg, { PYTORCH_NVML_BASED_CUDA_CHECK: '1' }),
    });
    this.child = child;
    createInterface({ input: child.stderr! }).on('line', (line) => console.error(`[trainer server] ${line}`));
    return new Promise((resolve) => {
      const lines = createInterface({ input: child.stdout! });
      let started = false;
      const fail = (why: string) => {
        this.socket = undefined;
        if (started) return console.error(`[trainer server] ${why}; the next job starts a new one`);
        this.unavailable = true;
        console.error(`[trainer server] not available (${why}); trainer jobs start as plain processes`);
        resolve(undefined);
      };
      child.once('error', (err) => fail(err.message));
      child.once('exit', (code, signal) => fail(`exited with ${signal ?? `code ${code}`}`));
      lines.once('line', (line) => {
        try {
          const ready = JSON.parse(line);
          if (ready.event !== 'ready') return fail(`unexpected first line ${line}`);
          console.log(`[trainer server] ready (pid ${ready.pid}, libraries imported in ${ready.preload_seconds}s)`);
          started = true;
          // From now on the server never keeps this process alive: it exits with it (end of its stdin).
          child.unref();
          for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as Socket | null)?.unref();
          this.socket = socket;
          resolve(socket);
        } catch {
          fail(`unexpected first line ${line}`);
        }
      });
    });
  }

  /** The server's process id while one runs. */
  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  /** Stops the server (its running jobs die with it). */
  close(): void {
    if (this.child && this.child.exitCode === null) this.child.kill('SIGTERM');
  }
}
