/**
 * The record of served requests (`gateway_requests`), written in batches off the request path: a response
 * never waits for the database. Rows wait in memory for at most `intervalMs` (or until `batchSize` of them
 * are waiting), then go in one INSERT. While the database is unreachable rows keep waiting, up to
 * `maxPending`; beyond that the oldest are dropped and counted, because serving matters more than the record.
 *
 * One row the database refuses for what it holds (a value out of range, a broken constraint: SQLSTATE
 * classes 22, 23, 54) must not hold back the others: it would fail its batch at every retry, and every
 * request, feedback and canary judgement after it would wait for a restart. So a refused batch is retried
 * row by row; a row refused on its own is set aside (dropped, counted in `logRejected`, logged once with the
 * reason) and the rest are kept. Any other failure (the database down, a connection lost) is the database's,
 * not the row's: the rows wait for the next try, as before.
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

  /**
   * Writes one batch of what is waiting (row by row when the batch is refused, setting aside the rows
   * refused on their own); false when the database failed (the rows not written wait for the next try).
   */
  async flush(): Promise<boolean> {
    while (this.flushing) await this.flushing;
    if (this.pending.length === 0) return true;
    const batch = this.pending.splice(0, this.opts.batchSize);
    let ok = false;
    this.flushing = (async () => {
      try {
        try {
          await this.insert(batch);
          for (const r of batch) this.unwritten.delete(r.id);
        } catch (err) {
          if (!refusedForItsRows(err)) {
            this.pending.unshift(...batch); // try again at the next tick
            throw err;
          }
          await this.oneByOne(batch);
        }
        ok = true;
      } catch (err) {
        console.error(`request log: writing ${batch.length} rows failed, will retry: ${(err as Error).message}`);
      } finally {
        this.flushing = undefined;
        this.metrics.logPending.set(this.pending.length);
      }
    })();
    await this.flushing;
    return ok;
  }

  private async insert(rows: RequestRecord[]): Promise<void> {
    await this.db.insertInto('gateway_requests').values(rows).onConflict((oc) => oc.column('id').doNothing()).execute();
  }

  /** The rows of a refused batch, each on its own; on a failure of the database itself, the rest go back to wait. */
  private async oneByOne(batch: RequestRecord[]): Promise<void> {
    for (const [i, row] of batch.entries()) {
      try {
        await this.insert([row]);
      } catch (err) {
        if (!refusedForItsRows(err)) {
          this.pending.unshift(...batch.slice(i)); // try again at the next tick
          throw err;
        }
        this.metrics.logRejected.inc();
        console.error(`request log: the database refused the record of ${row.id} (${row.model_version_id}), set aside: ${(err as Error).message}`);
      }
      this.unwritten.delete(row.id);
    }
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

/**
 * Whether Postgres refused the statement for the values in it, so that the same rows would be refused at
 * every retry: a data exception (22: out of range, bad encoding), an integrity violation (23) or a value
 * over a limit (54). Anything else (no SQLSTATE: the connection; 08, 53, 57: the server) may pass later.
 */
function refusedForItsRows(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && /^(22|23|54)[0-9A-Z]{3}$/.test(code);
}
