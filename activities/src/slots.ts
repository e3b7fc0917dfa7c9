/**
 * Trainer slots of a worker: how many trainer processes it runs at once. Every trainer job (train, validate,
 * RLHF, test on the GPU pools; tokenize on the CPU pool) holds a slot for as long as its process runs, so
 * trainer jobs never oversubscribe the machine, whichever pool or activity starts them; the rest wait here,
 * first come first served.
 *
 * A GPU worker (`--gpus 0,1`) has one slot per GPU, handed to the trainer as CUDA_VISIBLE_DEVICES. Its trainer
 * jobs on CPU (tokenize) take CPU slots instead: `--trainer-slots N`, by default one per two cores
 * (`defaultCpuSlots`), since each trainer already runs torch on several threads. A worker without GPUs has only
 * CPU slots, and its GPU pool trains on CPU in them too, so training and tokenizing never compete for the cores.
 * The worker also caps concurrent GPU-pool activities at their slots, so that the activities waiting for one stay
 * scheduled in Temporal rather than started here; the queue is what orders trainer jobs of different pools.
 */

/** CPU trainer slots of a machine with `cores` cores: one per two (torch runs each job on several threads), at least one. */
export function defaultCpuSlots(cores: number): number {
  return Math.max(1, Math.floor(cores / 2));
}

export class TrainerSlots {
  private readonly free: string[];
  private readonly waiting: Array<{ count: number; grant: (ids: string[]) => void }> = [];

  /** One slot per GPU: each job is given its GPU ids. */
  static gpus(ids: string[]): TrainerSlots {
    if (ids.length === 0) throw new RangeError('a GPU worker needs at least one GPU; use TrainerSlots.cpu');
    return new TrainerSlots('gpu', ids);
  }

  /** `count` slots for trainer jobs on CPU: none is given a GPU. */
  static cpu(count: number): TrainerSlots {
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`trainer slots must be a whole number of at least 1, not ${count}`);
    return new TrainerSlots('cpu', Array.from({ length: count }, (_, i) => `cpu${i}`));
  }

  /** No limit and no GPU: for activities called in-process by tests and benches, which start their jobs one by one. */
  static unlimited(): TrainerSlots {
    return new TrainerSlots('unlimited', []);
  }

  private constructor(
    readonly kind: 'gpu' | 'cpu' | 'unlimited',
    private readonly slots: string[],
  ) {
    this.free = [...slots];
  }

  /** The GPU ids this worker owns; none for CPU slots. */
  get gpuIds(): string[] {
    return this.kind === 'gpu' ? [...this.slots] : [];
  }

  /** How many jobs may run at once (Infinity when unlimited). */
  get size(): number {
    return this.kind === 'unlimited' ? Infinity : this.slots.length;
  }

  /** Slots held now by running jobs. */
  get held(): number {
    return this.slots.length - this.free.length;
  }

  /** Jobs waiting for slots. */
  get queued(): number {
    return this.waiting.length;
  }

  /** e.g. "2 (GPUs 0,1)" or "1 on CPU": for the worker's start-up line. */
  describe(): string {
    return this.kind === 'gpu' ? `${this.size} (GPUs ${this.slots.join(',')})` : this.kind === 'cpu' ? `${this.size} on CPU` : 'unlimited';
  }

  /** Runs `fn` with a GPU id, or with undefined for a CPU slot. */
  async with<T>(fn: (gpu: string | undefined) => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.withSeveral(1, (ids) => fn(ids[0]), signal);
  }

  /**
   * Runs `fn` holding `count` slots: with GPU slots, `count` GPU ids (at most `size`); with CPU slots, no ids,
   * and a job of more processes than the worker has slots takes all of them. They are taken all at once, first
   * come first served: two jobs that each held part of what they need would wait for each other forever, and a
   * small job overtaking a waiting big one could starve it. An abort of `signal` while waiting leaves the queue
   * and rejects with its reason.
   */
  async withSeveral<T>(count: number, fn: (gpus: string[]) => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.kind === 'unlimited') return fn([]);
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`${count} trainer slots asked`);
    if (this.kind === 'gpu' && count > this.slots.length) throw new RangeError(`${count} GPUs asked of a worker with ${this.slots.length}`);
    const need = Math.min(count, this.slots.length);
    const ids = this.waiting.length === 0 && this.free.length >= need ? this.free.splice(0, need) : await this.wait(need, signal);
    try {
      return await fn(this.kind === 'gpu' ? ids : []);
    } finally {
      this.free.push(...ids);
      this.grantWaiting();
    }
  }

  private wait(count: number, signal?: AbortSignal): Promise<string[]> {
    signal?.throwIfAborted();
    return new Promise<string[]>((resolve, reject) => {
      const entry = {
        count,
        grant: (ids: string[]) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(ids);
        },
      };
      const onAbort = () => {
        this.waiting.splice(this.waiting.indexOf(entry), 1);
        // The first in line may have been what held the others back.
        this.grantWaiting();
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(entry);
    });
  }

  private grantWaiting(): void {
    while (this.waiting.length && this.free.length >= this.waiting[0]!.count) {
      const next = this.waiting.shift()!;
      next.grant(this.free.splice(0, next.count));
    }
  }
}
