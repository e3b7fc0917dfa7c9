/**
 * GPU slots of a worker: `--gpus 0,1` gives two, and an activity that runs the trainer holds one for its
 * whole duration, handing it to the trainer as CUDA_VISIBLE_DEVICES. The worker also caps concurrent GPU
 * activities at the number of GPUs, so a slot is always free when an activity asks; the queue here is the
 * safety net, not the scheduler. A worker without GPUs has no slots and trains on CPU.
 */
export class GpuSlots {
  private readonly free: string[];
  private readonly waiting: Array<(id: string) => void> = [];

  constructor(readonly ids: string[]) {
    this.free = [...ids];
  }

  get size(): number {
    return this.ids.length;
  }

  /** Runs `fn` with a GPU id, or with undefined on a worker without GPUs. */
  async with<T>(fn: (gpu: string | undefined) => Promise<T>): Promise<T> {
    if (this.ids.length === 0) return fn(undefined);
    const id = this.free.shift() ?? (await new Promise<string>((resolve) => this.waiting.push(resolve)));
    try {
      return await fn(id);
    } finally {
      const next = this.waiting.shift();
      if (next) next(id);
      else this.free.push(id);
    }
  }
}
