/**
 * Live updates as server-sent events. Writers (bookkeeping activities, metric and log batches, the label
 * route) announce `{runId, kind}` on a Postgres channel; one LISTEN connection here fans each announcement
 * out to the streams that watch that run, which read only what changed (new metric points and log lines
 * after their cursor). Announcements arriving close together are coalesced, so a fast training loop costs
 * one read per stream every 250 ms at most. Clients never poll.
 *
 * Each stream is a Node stream that the route hands to Fastify as the response body; every event's data is
 * encoded through its schema in @tempered/api-contract (`runEvents`), and one that does not match is logged
 * and not sent.
 */
import { PassThrough } from 'node:stream';
import pg from 'pg';
import { globalEvents, runEvents } from '@tempered/api-contract';
import { z } from 'zod';
import { CHANGES_CHANNEL, type ChangeKind } from '@tempered/db';
import { approvalsOf, labelProgress, logsAfter, metricsSince, runDetail, runLive, type Views } from './views';

const COALESCE_MS = 250;
const KEEPALIVE_MS = 15_000;

/** Headers of an event stream; the route sets them with the stream as its body. */
export const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' };

/** A new event stream, its retry hint written. */
export function openStream(): PassThrough {
  const res = new PassThrough();
  res.write('retry: 2000\n\n');
  return res;
}

type Events = typeof runEvents & typeof globalEvents;
const schemas: Events = { ...runEvents, ...globalEvents };

function send<K extends keyof Events>(res: PassThrough, event: K, data: z.output<Events[K]>): void {
  const encoded = z.safeEncode(schemas[event] as z.ZodType, data);
  if (!encoded.success) {
    console.error(`event ${event} does not match its schema, not sent: ${JSON.stringify(encoded.error.issues)}`);
    return;
  }
  res.write(`event: ${event}\ndata: ${JSON.stringify(encoded.data)}\n\n`);
}

interface RunStream {
  runId: string;
  res: PassThrough;
  metricsCursor: string | undefined;
  lastLogId: number;
  pending: Set<ChangeKind>;
  timer?: NodeJS.Timeout;
  busy: boolean;
}

export class EventHub {
  private listener?: pg.Client;
  private readonly runStreams = new Set<RunStream>();
  private readonly globalStreams = new Set<PassThrough>();
  private readonly keepalive: NodeJS.Timeout;

  constructor(
    private readonly views: Views,
    private readonly databaseUrl: string,
  ) {
    this.keepalive = setInterval(() => {
      for (const s of this.runStreams) s.res.write(': keepalive\n\n');
      for (const res of this.globalStreams) res.write(': keepalive\n\n');
    }, KEEPALIVE_MS);
    this.keepalive.unref();
  }

  async start(): Promise<void> {
    const client = new pg.Client({ connectionString: this.databaseUrl });
    client.on('notification', (msg) => {
      try {
        const { runId, kind } = JSON.parse(msg.payload ?? '{}') as { runId: string; kind: ChangeKind };
        this.changed(runId, kind);
      } catch {
        /* not ours */
      }
    });
    // A lost LISTEN connection would silently freeze every view: reconnect, and tell streams to refresh.
    client.on('error', (err) => {
      console.error(`event listener lost its database connection (${err.message}); reconnecting`);
      this.listener = undefined;
      setTimeout(() => void this.start().catch((e) => console.error(`event listener: ${e.message}`)), 1000);
    });
    await client.connect();
    await client.query(`LISTEN ${CHANGES_CHANNEL}`);
    this.listener = client;
  }

  async stop(): Promise<void> {
    clearInterval(this.keepalive);
    for (const s of this.runStreams) s.res.end();
    for (const res of this.globalStreams) res.end();
    await this.listener?.end().catch(() => {});
  }

  /** `GET /api/runs/:id/events`: a snapshot, then what changes; undefined for an unknown run. */
  async watchRun(runId: string, onClose: (fn: () => void) => void): Promise<PassThrough | undefined> {
    const snapshot = await runDetail(this.views, runId);
    if (!snapshot) return undefined;
    const res = openStream();
    const stream: RunStream = { runId, res, metricsCursor: undefined, lastLogId: 0, pending: new Set(), busy: false };
    // Cursors start where the snapshot ends, so no point or line is sent twice.
    stream.metricsCursor = (await metricsSince(this.views.db, runId, undefined)).cursor;
    const tail = await logsAfter(this.views.db, runId, 0, 1);
    stream.lastLogId = tail.at(-1)?.id ?? 0;
    send(res, 'snapshot', snapshot as z.output<Events['snapshot']>);
    this.runStreams.add(stream);
    onClose(() => {
      clearTimeout(stream.timer);
      this.runStreams.delete(stream);
      res.end();
    });
    return res;
  }

  /** `GET /api/events`: every run's summary whenever it changes (for lists and inbox counts). */
  watchAll(onClose: (fn: () => void) => void): PassThrough {
    const res = openStream();
    this.globalStreams.add(res);
    onClose(() => {
      this.globalStreams.delete(res);
      res.end();
    });
    return res;
  }

  private changed(runId: string, kind: ChangeKind): void {
    if (kind === 'run' && this.globalStreams.size > 0) void this.broadcastRun(runId);
    for (const s of this.runStreams) {
      if (s.runId !== runId) continue;
      s.pending.add(kind);
      s.timer ??= setTimeout(() => void this.flush(s), COALESCE_MS);
    }
  }

  private async broadcastRun(runId: string): Promise<void> {
    const run = await this.views.db
      .selectFrom('runs')
      .select(['id', 'name', 'status', 'requested_by', 'created_at', 'updated_at', 'error'])
      .where('id', '=', runId)
      .executeTakeFirst()
      .catch(() => undefined);
    if (!run) return;
    for (const res of this.globalStreams) send(res, 'runs', { run: run as z.output<Events['runs']>['run'] });
  }

  private async flush(s: RunStream): Promise<void> {
    s.timer = undefined;
    if (s.busy) {
      s.timer = setTimeout(() => void this.flush(s), COALESCE_MS);
      return;
    }
    s.busy = true;
    const kinds = s.pending;
    s.pending = new Set();
    const { db } = this.views;
    try {
      if (kinds.has('run') || kinds.has('stage') || kinds.has('approval') || kinds.has('labels')) {
        const live = await runLive(this.views, s.runId);
        if (live) send(s.res, 'run', live as z.output<Events['run']>);
      }
      if (kinds.has('metrics')) {
        const { points, cursor } = await metricsSince(db, s.runId, s.metricsCursor);
        s.metricsCursor = cursor;
        if (points.length > 0) send(s.res, 'metrics', { points });
      }
      if (kinds.has('logs')) {
        const lines = await logsAfter(db, s.runId, s.lastLogId);
        s.lastLogId = lines.at(-1)?.id ?? s.lastLogId;
        if (lines.length > 0) send(s.res, 'logs', { lines });
      }
      if (kinds.has('labels')) {
        const progress = await labelProgress(db, s.runId);
        if (progress) send(s.res, 'labels', progress);
      }
      if (kinds.has('approval')) send(s.res, 'approvals', { approvals: (await approvalsOf(db, s.runId)) as z.output<Events['approvals']>['approvals'] });
    } catch (err) {
      console.error(`event stream of ${s.runId}: ${(err as Error).message}`);
    } finally {
      s.busy = false;
    }
  }
}
