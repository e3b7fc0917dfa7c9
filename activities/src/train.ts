/**
 * train: supervised fine-tuning by the Python trainer. Trainer events become heartbeats (carrying the
 * checkpoints uploaded so far) and metric rows; every checkpoint goes to S3 as soon as it is written. A
 * retried attempt reads the last heartbeat, downloads the newest checkpoint and resumes from it, so a crash
 * costs at most one checkpoint interval of training.
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, TrainResult } from '@tempered/workflows';
import { node, recordArtifacts, recordLineage, recordMetrics } from '@tempered/db';
import { type Deps, log, withScratch } from './context';
import { MetricBuffer } from './metrics';
import { runTrainer } from './trainer';

/** Heartbeat details: what a retried attempt needs to resume. */
export interface TrainProgress {
  step: number;
  loss?: number;
  /** Checkpoints uploaded so far, oldest first, each with its step. */
  checkpoints: Array<{ step: number; ref: ArtifactRef }>;
  initialLoss?: number;
}

export async function train(
  deps: Deps,
  input: { runId: string; spec: PipelineSpec; trainShard: ArtifactRef; tokenizer: ArtifactRef },
): Promise<TrainResult> {
  const { runId, spec } = input;
  const ctx = Context.current();
  const previous = ctx.info.heartbeatDetails as TrainProgress | undefined;
  const progress: TrainProgress = { step: previous?.step ?? 0, checkpoints: previous?.checkpoints ?? [], initialLoss: previous?.initialLoss };

  return withScratch(deps, async (dir) => {
    const trainShard = await deps.store.download(input.trainShard, path.join(dir, 'train.shard'));
    const tokenizer = await deps.store.download(input.tokenizer, path.join(dir, 'tokenizer.json'));
    const latest = progress.checkpoints.at(-1);
    const resumeFrom = latest ? await deps.store.download(latest.ref, path.join(dir, 'resume', 'checkpoint.pt')) : undefined;
    if (latest) log('resuming training from checkpoint', { step: latest.step, attempt: ctx.info.attempt });

    const metrics = new MetricBuffer(deps.db, runId, 'train');
    let lastLoss = NaN;
    const config = {
      train_shard: trainShard,
      tokenizer,
      output_dir: path.join(dir, 'out'),
      model: { n_layer: spec.model.nLayer, n_head: spec.model.nHead, n_embd: spec.model.nEmbd, context_length: spec.model.contextLength },
      steps: spec.train.steps,
      batch_size: spec.train.batchSize,
      learning_rate: spec.train.learningRate,
      warmup_steps: spec.train.warmupSteps,
      weight_decay: spec.train.weightDecay,
      checkpoint_every: spec.train.checkpointEvery,
      seed: spec.train.seed,
      device: 'auto',
      ...(resumeFrom ? { resume_from: resumeFrom } : {}),
    };
    const { finished } = await runTrainer(deps, 'sft', config, dir, async (e) => {
      if (e.event === 'step') {
        lastLoss = Number(e.loss);
        progress.step = Number(e.step);
        progress.loss = lastLoss;
        progress.initialLoss ??= lastLoss;
        metrics.add('loss', progress.step, lastLoss);
        metrics.add('lr', progress.step, Number(e.lr));
        metrics.add('tokens_per_sec', progress.step, Number(e.tokens_per_sec));
        ctx.heartbeat(progress);
        await metrics.maybeFlush();
      } else if (e.event === 'checkpoint') {
        const step = Number(e.step);
        const ref = await deps.store.putFile(String(e.path), 'checkpoint', `step-${String(step).padStart(8, '0')}.pt`);
        if (!progress.checkpoints.some((c) => c.ref.sha256 === ref.sha256)) progress.checkpoints.push({ step, ref });
        await recordArtifacts(deps.db, runId, 'train', [ref]);
        await recordLineage(deps.db, runId, [
          { parent: node.artifact(input.trainShard), child: node.artifact(ref), relation: 'trained-on' },
          { parent: node.artifact(input.tokenizer), child: node.artifact(ref), relation: 'tokenized-by' },
        ]);
        ctx.heartbeat(progress);
        log('checkpoint uploaded', { step, sha256: ref.sha256.slice(0, 12) });
      }
    });
    await metrics.flush();
    const checkpoints = progress.checkpoints.sort((a, b) => a.step - b.step);
    return {
      model: checkpoints.at(-1)!.ref,
      checkpoints: checkpoints.map((c) => c.ref),
      steps: Number(finished.step),
      initialLoss: Number(finished.initial_loss ?? progress.initialLoss),
      finalLoss: Number(finished.final_loss ?? lastLoss),
    };
  });
}
