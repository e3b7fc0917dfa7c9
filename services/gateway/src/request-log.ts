/**
 * The record of served requests (`gateway_requests`), written in batches off the request path: a response
 * never waits for the database. Rows wait in memory for at most `intervalMs` (or until `batchSize` of them
 * are waiting), then go in one INSERT. While the database is unreachable rows keep waiting, up to
 * `maxPending`; beyond that the oldest are dropped and counted, because serving matters more than the record.
 */
import type { Db, GatewayRequestsTable } from '@tempered/db';
import type { Insertable } from 'kysely';
import type { GatewayMetrics } from './metrics';

export type RequestRecord = Insertable<GatewayRequestsTable> & { id: string };

export class RequestLog {
  private pending: RequestRecord[] = [];
  /** Ids of rows not yet committed (waiting or in the INSERT under way). */
  private unwritten = new Set<string>();
  private flushing: Promise<void> | undefined;
  private timer: NodeJS.Timeout;

  constructor(
    private readonly db: Db,
    private readonly metrics: GatewayMetrics,
    private readonly opts = { intervalMs: 200, batchSize: 500, maxPending: 50_000 },
  ) {
    this.timer = setInterval(() => void this.flush(), opts.intervalMs);
    this.timer.unref();
  }

  add(record: RequestRecord): void {
    this.pending.push(record);
    this.unwritten.add(record.id);
    if (this.pending.length > this.opts.maxPending) {
      const dropped = this.pending.splice(0, this.pending.length - this.opts.maxPending);
      for (const r of dropped) this.unwritten.delete(r.id);
      this.metrics.logDropped.inc(dropped.length);
    }
    this.metrics.logPending.set(this.pending.length);
    if (this.pending.length >= this.opts.batchSize) void this.flush();
  }

  /** Whether the request is known but not yet in the table. */
  has(id: string): boolean {
    return this.unwritten.has(id);
  }

  /** Resolves once the request's row is committed (it writes batches until then), or when writing fails. */
  async settle(id: string): Promise<void> {
    for (let i = 0; i < 1000 && this.unwritten.has(id); i++) {
      if (!(await this.flush())) return; // the database refused: the caller will not find the row
    }
  }

  /** Writes one batch of what is waiting; false when the database refused it (the rows wait for the next try). */
  async flush(): Promise<boolean> {
    while (this.flushing) await this.flushing;
    if (this.pending.length === 0) return true;
    const batch = this.pending.splice(0, this.opts.batchSize);
    let ok = false;
    this.flushing = (async () => {
      try {
        await this.db.insertInto('gateway_requests').values(batch).onConflict((oc) => oc.column('id').doNothing()).execute();
        for (const r of batch) this.unwritten.delete(r.id);
        ok = true;
      } catch (err) {
        this.pending.unshift(...batch); // try again at the next tick
        console.error(`request log: writing ${batch.length} rows failed, will retry: ${(err as Error).message}`);
      } finally {
        this.flushing = undefined;
        this.metrics.logPending.set(this.pending.length);
      }
    })();
    await this.flushing;
    return ok;
  }

  /** Writes until nothing is waiting, or gives up after `timeoutMs` (used at shutdown). */
  async drain(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.pending.length > 0 && Date.now() < deadline) {
      await this.flush();
      if (this.pending.length > 0) await new Promise((r) => setTimeout(r, 200));
    }
    clearInterval(this.timer);
  }
}
