/**
 * The pre-started trainer of one worker process (services/trainer/tempered_trainer/prefork.py): a Python process
 * that has imported torch, transformers, peft and trl once and forks a child per job, so a job starts working in
 * a tenth of a second instead of paying ~7 CPU-seconds of imports. A job never waits for it: until it is up, jobs
 * start as plain `python -m tempered_trainer` processes, and when it cannot start at all they always do, so it
 * only ever makes jobs faster. It is started when a GPU worker starts, and otherwise once a plain job has done its
 * imports (two imports never compete for the cores; a worker that only runs data stages never pays for it), and
 * again when it has died.
 *
 * A job is started through the prefork client (`tempered_trainer.prefork run SOCKET ...`), which stands for the
 * job towards the activity: its stdio are the job's, its exit code is the job's, and killing its process group
 * kills the job (the server watches the client's connection).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import type { Socket } from 'node:net';
import os from 'node:os';
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
   * process. Never waits and never starts the server, so a job's first event (and heartbeat) comes no later than
   * it would without one: `ready()` starts it, when no job is importing the same libraries beside it.
   */
  command(): string[] {
    return this.socket && this.pid !== undefined ? ['-m', 'tempered_trainer.prefork', 'run', this.socket] : ['-m', 'tempered_trainer'];
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
      // childEnv has CUDA checks go through NVML, so importing makes no CUDA context (the server checks it).
      env: childEnv(this.cfg),
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
