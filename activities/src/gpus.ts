/**
 * GPU slots of a worker: `--gpus 0,1` gives two, and an activity that runs the trainer holds one (or, for a
 * distributed job, `train.gpus` of them) for its whole duration, handing them to the trainer as
 * CUDA_VISIBLE_DEVICES. The worker also caps concurrent GPU activities at the number of GPUs, so a slot is
 * usually free when an activity asks; the queue here is the safety net, not the scheduler. A worker without GPUs
 * has no slots and trains on CPU (a distributed job as that many CPU processes).
 */
export class GpuSlots {
  private readonly free: string[];
  private readonly waiting: Array<{ count: number; grant: (ids: string[]) => void }> = [];

  constructor(readonly ids: string[]) {
    this.free = [...ids];
  }

  get size(): number {
    return this.ids.length;
  }

  /** Runs `fn` with a GPU id, or with undefined on a worker without GPUs. */
  async with<T>(fn: (gpu: string | undefined) => Promise<T>): Promise<T> {
    return this.withSeveral(1, (ids) => fn(ids[0]));
  }

  /**
   * Runs `fn` with `count` GPU ids (at most `size`), or with none on a worker without GPUs. They are taken all at
   * once, first come first served: two jobs that each held part of what they need would wait for each other
   * forever, and a small job overtaking a waiting big one could starve it.
   */
  async withSeveral<T>(count: number, fn: (gpus: string[]) => Promise<T>): Promise<T> {
    if (this.ids.length === 0) return fn([]);
    if (!Number.isInteger(count) || count < 1 || count > this.ids.length) throw new RangeError(`${count} GPUs asked of a worker with ${this.ids.length}`);
    const ids =
      this.waiting.length === 0 && this.free.length >= count
        ? this.free.splice(0, count)
        : await new Promise<string[]>((grant) => this.waiting.push({ count, grant }));
    try {
      return await fn(ids);
    } finally {
      this.free.push(...ids);
      while (this.waiting.length && this.free.length >= this.waiting[0]!.count) {
        const next = this.waiting.shift()!;
        next.grant(this.free.splice(0, next.count));
      }
    }
  }
}
