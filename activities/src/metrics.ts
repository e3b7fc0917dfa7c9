/**
 * Buffers metric points from a trainer and writes them in batches, so a fast training loop does not cost a
 * database round trip per step. Points are upserted by (run, stage, name, step): a resumed attempt that
 * repeats a step overwrites it instead of duplicating it.
 */
import { type Db, recordMetrics } from '@tempered/db';

const FLUSH_EVERY_MS = 2000;

export class MetricBuffer {
  private points: Array<{ name: string; step: number; value: number }> = [];
  private lastFlush = Date.now();

  constructor(
    private readonly db: Db,
    private readonly runId: string,
    private readonly stage: string,
    /** Prefixes every name (`lr=0.003/loss`), so parallel candidates of a sweep keep separate series. */
    private readonly series?: string,
  ) {}

  add(name: string, step: number, value: number): void {
    if (Number.isFinite(value)) this.points.push({ name: this.series ? `${this.series}/${name}` : name, step, value });
  }

  async maybeFlush(): Promise<void> {
    if (Date.now() - this.lastFlush >= FLUSH_EVERY_MS) await this.flush();
  }

  async flush(): Promise<void> {
    this.lastFlush = Date.now();
    // The same (name, step) twice in one batch would violate the upsert: keep the newest.
    const batch = [...new Map(this.points.map((p) => [`${p.name}@${p.step}`, p])).values()];
    this.points = [];
    await recordMetrics(this.db, this.runId, this.stage, batch);
  }
}
