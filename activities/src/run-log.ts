/**
 * A run's human-readable log, as the dashboard's log tail shows it: the trainer's stderr plus one line per
 * notable event (start, a step every 5% of the job, checkpoints, evaluation, the end). Lines are buffered and
 * written in batches, so logging never slows the loop that produces them.
 */
import { type Db, recordLogs } from '@tempered/db';
import type { TrainerEvent } from './trainer';

const FLUSH_EVERY_MS = 1000;
/** Activities that belong to another stage's row (the RLHF stage runs several). */
const STAGE_OF: Record<string, string> = { rewardModel: 'rlhf', rl: 'rlhf', proposePairs: 'rlhf' };

export class RunLog {
  private lines: string[] = [];
  private timer?: NodeJS.Timeout;
  private totalSteps = 0;
  private readonly stage: string;

  constructor(
    private readonly db: Db,
    private readonly runId: string,
    activityType: string,
    private readonly command: string,
  ) {
    this.stage = STAGE_OF[activityType] ?? activityType;
  }

  line(text: string): void {
    this.lines.push(text);
    this.timer ??= setTimeout(() => void this.flush(), FLUSH_EVERY_MS);
  }

  event(e: TrainerEvent): void {
    const c = this.command;
    switch (e.event) {
      case 'started':
        this.totalSteps = Number(e.total_steps) || 0;
        this.line(`${c}: started on ${e.device}${e.params ? `, ${Number(e.params).toLocaleString('en')} parameters` : ''}${e.step ? `, resuming at step ${e.step}` : ''}${this.totalSteps ? `, ${this.totalSteps} steps` : ''}`);
        break;
      case 'step': {
        const every = Math.max(1, Math.round(this.totalSteps / 20));
        if (e.step % every === 0 || e.step === this.totalSteps) {
          this.line(`${c}: step ${e.step}/${this.totalSteps || '?'} loss ${Number(e.loss).toFixed(4)}${e.tokens_per_sec ? ` ${Math.round(e.tokens_per_sec)} tok/s` : ''}`);
        }
        break;
      }
      case 'checkpoint':
        this.line(`${c}: checkpoint at step ${e.step}`);
        break;
      case 'progress': // a long scoring or generation, at most every 10 s: live status for whoever follows the log
        this.line(`${c}: ${e.what} ${e.done}/${e.total}`);
        break;
      case 'eval':
        this.line(
          `${c}: eval${e.loss !== null ? ` loss ${Number(e.loss).toFixed(4)} perplexity ${Number(e.perplexity).toFixed(3)}` : ''}${e.exact_match !== undefined ? ` exact match ${Number(e.exact_match).toFixed(3)}` : ''}`,
        );
        break;
      case 'finished':
        this.line(`${c}: finished`);
        break;
      case 'error':
        this.line(`${c}: error: ${e.reason}`);
        break;
    }
  }

  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.lines;
    this.lines = [];
    // The log is for people: losing a batch to a database hiccup must not fail the training it describes.
    await recordLogs(this.db, this.runId, this.stage, batch).catch((err) => console.warn(`run log of ${this.runId}: ${(err as Error).message}`));
  }
}
