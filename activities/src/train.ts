/**
 * train: supervised fine-tuning by the Python trainer. Trainer events become heartbeats and metric rows;
 * every checkpoint goes to S3 and into the artifacts table as soon as it is written. A retried attempt
 * resumes from the newest checkpoint it finds there or in the last heartbeat, so a crash costs at most one
 * checkpoint interval of training, and a step that an earlier attempt already checkpointed is never stored
 * twice (torch.save output is not byte-stable, so content addressing alone would not dedupe it).
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, TrainResult } from '@tempered/contract';
import { node, recordArtifacts, recordLineage } from '@tempered/db';
import { type Deps, log, withScratch } from './context';
import { stageBaseModel } from './base-models';
import { cachedStage, marked } from './cache';
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

/** `step-00000150.pt`, or `lr_0.003-step-00000150.pt` for a sweep candidate: one name per step and candidate. */
export function checkpointName(step: number, candidate?: string): string {
  const prefix = candidate ? `${candidate.replace(/[^A-Za-z0-9.-]/g, '_')}-` : '';
  return `${prefix}step-${String(step).padStart(8, '0')}.pt`;
}

/** Checkpoints this run's earlier attempts uploaded for this candidate, by step. */
async function uploadedCheckpoints(deps: Deps, runId: string, candidate?: string): Promise<Map<number, ArtifactRef>> {
  const rows = await deps.db
    .selectFrom('artifacts')
    .select(['uri', 'sha256', 'bytes'])
    .where('run_id', '=', runId)
    .where('stage', '=', 'train')
    .where('kind', '=', 'checkpoint')
    .execute();
  const found = new Map<number, ArtifactRef>();
  for (const row of rows) {
    const base = row.uri.slice(row.uri.lastIndexOf('/') + 1);
    const step = Number(/step-(\d+)\.pt$/.exec(base)?.[1]);
    if (Number.isInteger(step) && base === checkpointName(step, candidate)) {
      found.set(step, { uri: row.uri, sha256: row.sha256, bytes: row.bytes, kind: 'checkpoint' });
    }
  }
  return found;
}

export async function train(
  deps: Deps,
  input: {
    runId: string;
    spec: PipelineSpec;
    specDir?: string;
    trainShard: ArtifactRef;
    tokenizer: ArtifactRef;
    /** Overrides the spec's learning rate for one candidate of a sweep. */
    learningRate?: number;
    /** The sweep candidate's label, which prefixes its metric names (`lr=0.003/loss`). */
    candidate?: string;
  },
): Promise<TrainResult> {
  const { runId, spec } = input;
  const ctx = Context.current();
  const previous = ctx.info.heartbeatDetails as TrainProgress | undefined;
  const progress: TrainProgress = { step: previous?.step ?? 0, checkpoints: [], initialLoss: previous?.initialLoss };
  // Earlier attempts' checkpoints: those in the last heartbeat, and any uploaded after it was sent.
  const known = await uploadedCheckpoints(deps, runId, input.candidate);
  for (const c of previous?.checkpoints ?? []) if (!known.has(c.step)) known.set(c.step, c.ref);
  progress.checkpoints = [...known].sort(([a], [b]) => a - b).map(([step, ref]) => ({ step, ref }));

  return withScratch(deps, async (dir) => {
    const staged = await stageBaseModel(deps, runId, spec, input.specDir, dir);
    const base = staged?.path;
    // A base given as a directory has no single digest; a model.tar does, and links the lineage.
    const baseRef = staged?.ref;
    const lora = spec.train.lora;
    const learningRate = input.learningRate ?? spec.train.learningRate;
    const classifier =
      spec.model.type === 'tfidf-logreg' ? { choices: spec.test.choices!, ...spec.model.classifier, seed: spec.train.seed } : undefined;
    const modelConfig = { n_layer: spec.model.nLayer, n_head: spec.model.nHead, n_embd: spec.model.nEmbd, context_length: spec.model.contextLength };
    const loraConfig = lora ? { r: lora.r, alpha: lora.alpha ?? lora.r, dropout: lora.dropout ?? 0, ...(lora.targetModules ? { target_modules: lora.targetModules } : {}) } : undefined;
    const hyper = {
      steps: spec.train.steps,
      batch_size: spec.train.batchSize,
      learning_rate: learningRate,
      warmup_steps: spec.train.warmupSteps,
      weight_decay: spec.train.weightDecay,
      checkpoint_every: spec.train.checkpointEvery,
      seed: spec.train.seed,
      // Left out at their defaults, so runs that do not use them keep their cache keys.
      ...(spec.train.gradientAccumulation > 1 ? { gradient_accumulation: spec.train.gradientAccumulation } : {}),
      ...(spec.train.gradientCheckpointing ? { gradient_checkpointing: true } : {}),
      ...(spec.model.maxSeqLength ? { max_seq_length: spec.model.maxSeqLength } : {}),
    };

    const outcome = await cachedStage(
      deps,
      {
        runId,
        stage: 'train',
        spec,
        // Cache key: everything the trainer receives except paths and the device: the architecture (or, with
        // a base model, the base's digest, which replaces it), LoRA, steps, batch size, this candidate's
        // learning rate, warmup, weight decay, checkpoint interval (which checkpoints exist) and seed; the
        // candidate's label (it names the checkpoints and metric series); the digests of the train shard and
        // the tokenizer; and (added by the cache) the trainer's code digest. Not `heartbeatTimeout` nor the
        // sweep's other learning rates, which do not change this candidate's result.
        // Several processes (`gpus`) reach the same result up to the order of float sums, so they get a key of
        // their own; left out at 1 so that existing keys stay.
        // A classifier's key is its own settings and labels instead (the hyperparameters above do not reach it).
        config: classifier
          ? { classifier, candidate: input.candidate ?? null }
          : { ...(base ? {} : { model: modelConfig }), lora: loraConfig, ...hyper, ...(spec.train.gpus > 1 ? { gpus: spec.train.gpus } : {}), candidate: input.candidate ?? null },
        inputs: { trainShard: input.trainShard.sha256, tokenizer: input.tokenizer.sha256, ...(staged ? { baseModel: staged.digest } : {}) },
        metrics: { series: input.candidate },
      },
      async (): Promise<TrainResult> => {
        const trainShard = await deps.store.download(input.trainShard, path.join(dir, 'train.shard'));
        const tokenizer = await deps.store.download(input.tokenizer, path.join(dir, 'tokenizer.json'));
        const latest = progress.checkpoints.at(-1);
        const resumeFrom = latest ? await deps.store.download(latest.ref, path.join(dir, 'resume', 'checkpoint.pt')) : undefined;
        if (latest) log('resuming training from checkpoint', { step: latest.step, attempt: ctx.info.attempt });

        const metrics = new MetricBuffer(deps.db, runId, 'train', input.candidate);
        let lastLoss = NaN;
        const output_dir = path.join(dir, 'out');
        // A classifier (services/trainer classifier.py) trains in one go: the same events, step 0 its prior, step 1 the fit.
        const [command, config] = classifier
          ? (['classifier', { train_shard: trainShard, tokenizer, output_dir, ...classifier }] as const)
          : ([
              'sft',
              {
                train_shard: trainShard,
                tokenizer,
                output_dir,
                ...(base ? { base_model: base } : { model: modelConfig }),
                ...(loraConfig ? { lora: loraConfig } : {}),
                ...hyper,
                device: 'auto',
                ...(resumeFrom ? { resume_from: resumeFrom } : {}),
              },
            ] as const);
        const { finished } = await runTrainer(deps, command, config, dir, async (e) => {
          if (e.event === 'started') {
            // Where this attempt began: > 0 after a resume. Keyed by attempt, so every retry is visible.
            metrics.add('start_step', ctx.info.attempt, Number(e.step));
            await metrics.flush();
          } else if (e.event === 'step') {
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
            if (known.has(step)) return; // an earlier attempt stored this step; the resumed run reproduces it
            const ref = await deps.store.putFile(String(e.path), 'checkpoint', checkpointName(step, input.candidate));
            known.set(step, ref);
            progress.checkpoints.push({ step, ref });
            await recordArtifacts(deps.db, runId, 'train', [ref]);
            await recordLineage(deps.db, runId, lineageOf(ref));
            ctx.heartbeat(progress);
            log('checkpoint uploaded', { step, sha256: ref.sha256.slice(0, 12) });
          }
        }, { processes: spec.train.gpus });
        await metrics.flush();
        const checkpoints = progress.checkpoints.sort((a, b) => a.step - b.step);
        return {
          model: checkpoints.at(-1)!.ref,
          checkpoints: checkpoints.map((c) => c.ref),
          steps: Number(finished.step),
          initialLoss: Number(finished.initial_loss ?? progress.initialLoss),
          finalLoss: Number(finished.final_loss ?? lastLoss),
        };
      },
      {
        artifacts: (r) => r.checkpoints,
        // Already done checkpoint by checkpoint when computed (repeating it is a no-op); a reused result gets
        // every checkpoint and its lineage here.
        record: async (r) => {
          await recordArtifacts(deps.db, runId, 'train', r.checkpoints);
          await recordLineage(deps.db, runId, r.checkpoints.flatMap(lineageOf));
        },
      },
    );
    return marked(outcome.value, outcome);

    function lineageOf(ref: ArtifactRef) {
      return [
        { parent: node.artifact(input.trainShard), child: node.artifact(ref), relation: 'trained-on' },
        { parent: node.artifact(input.tokenizer), child: node.artifact(ref), relation: 'tokenized-by' },
        ...(baseRef ? [{ parent: node.artifact(baseRef), child: node.artifact(ref), relation: 'fine-tuned-from' }] : []),
      ];
    }
  });
}
