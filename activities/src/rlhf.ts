/**
 * rlhf: aligns the validated model with human preferences from the spec's preference pairs (or, with
 * `rlhf.source: labels`, the run's pairs labeled in the dashboard, see labels.ts; with `feedback`, the pairs
 * production feedback through the gateway amounts to), either by DPO
 * (one activity) or by RL: a reward model trained on the pairs, then GRPO against it with a KL penalty to the
 * validated model (two activities). Malformed pairs are dropped and counted, not fed to the trainer.
 */
import { appendFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactKind, ArtifactRef, RewardModelResult, RlhfResult } from '@tempered/contract';
import { feedbackPreferencePairs, node, recordArtifacts, recordLineage } from '@tempered/db';
import { cleanText } from '@tempered/text';
import { type Deps, badInput, log, withScratch } from './context';
import { labeledPreferences } from './labels';
import { MetricBuffer } from './metrics';
import { compressionOf, openBytes, type Compression } from './readers';
import { JsonlWriter, readLines } from './records';
import { stageSource } from './sources';
import { runTrainer, type TrainerEvent } from './trainer';

/**
 * Keeps well-formed `{prompt, chosen, rejected}` lines (of a JSONL file, gzip- or zstd-compressed or not), their
 * texts normalized by the run's own clean rules (NFKC, control characters, whitespace; PII masking is for
 * training data), so DPO sees a prompt exactly as SFT and serving do; counts the rest, a text with a lone UTF-16
 * surrogate among them (the trainer cannot encode it: ingest quarantines such records for the same reason).
 */
export async function filterPreferences(source: string, compression: Compression, out: string, spec: PipelineSpec): Promise<{ kept: number; dropped: number }> {
  const rules = { ...spec.clean, maskPii: false };
  const clean = (text: string) => cleanText(text, rules).text;
  const sink = new JsonlWriter(out);
  let dropped = 0;
  try {
    for await (const { text } of readLines(openBytes(source, compression))) {
      if (!text.trim()) continue;
      let p: Record<string, unknown>;
      try {
        p = JSON.parse(text);
      } catch {
        p = {};
      }
      if (typeof p?.prompt !== 'string' || typeof p?.chosen !== 'string' || typeof p?.rejected !== 'string' || [p.prompt, p.chosen, p.rejected].some((t) => /\p{Cs}/u.test(t as string))) {
        dropped++;
        continue;
      }
      const [prompt, chosen, rejected] = [clean(p.prompt), clean(p.chosen), clean(p.rejected)];
      if (!prompt || !chosen || chosen === rejected) {
        dropped++;
        continue;
      }
      await sink.write({ prompt, chosen, rejected });
    }
  } catch (err) {
    sink.abort();
    throw err;
  }
  await sink.close();
  return { kept: sink.lines, dropped };
}

function preferencesCompression(spec: PipelineSpec): Compression {
  const { uri, compression } = spec.rlhf.preferences!;
  return compressionOf(uri, compression);
}

/** Stages the spec's preference source, keeps the well-formed pairs, and stores them as an artifact. */
async function preparePreferences(deps: Deps, spec: PipelineSpec, specDir: string | undefined, dir: string) {
  if (!spec.rlhf.preferences) throw badInput('rlhf.preferences is required unless rlhf.method is "none"');
  const source = await stageSource(deps, spec.rlhf.preferences.uri, specDir, dir, 0);
  const path_ = path.join(dir, 'preferences.jsonl');
  const { kept, dropped } = await filterPreferences(source, preferencesCompression(spec), path_, spec);
  if (kept === 0) throw badInput(`rlhf.preferences: no well-formed {prompt, chosen, rejected} pairs (${dropped} malformed)`);
  const ref = await deps.store.putFile(path_, 'preferences', 'preferences.jsonl');
  return { path: path_, ref, kept, dropped };
}

/**
 * `rlhf.source: feedback`: the pairs people's feedback on this model name's served answers amounts to (see
 * feedbackPreferencePairs), after the spec's own pairs when it names some, as one preferences artifact.
 */
async function feedbackPreferences(deps: Deps, spec: PipelineSpec, specDir: string | undefined, dir: string) {
  const fromFeedback = await feedbackPreferencePairs(deps.db, { modelName: spec.name });
  const path_ = path.join(dir, 'preferences.jsonl');
  let base = { kept: 0, dropped: 0 };
  if (spec.rlhf.preferences) base = await filterPreferences(await stageSource(deps, spec.rlhf.preferences.uri, specDir, dir, 0), preferencesCompression(spec), path_, spec);
  if (fromFeedback.length + base.kept === 0) {
    throw badInput(`rlhf.source is "feedback" but there is no feedback on ${spec.name} yet that makes a pair (thumbs up and down on one prompt, or a pairwise choice)`);
  }
  const feedbackFile = path.join(dir, 'feedback-pairs.jsonl');
  const sink = new JsonlWriter(feedbackFile);
  for (const p of fromFeedback) await sink.write(p);
  await sink.close();
  await appendFile(path_, await readFile(feedbackFile));
  const ref = await deps.store.putFile(path_, 'preferences', 'preferences.jsonl');
  log('preferences from feedback', { feedbackPairs: fromFeedback.length, datasetPairs: base.kept });
  return { path: path_, ref, kept: base.kept + fromFeedback.length, dropped: base.dropped };
}

/** What DPO and the reward model both start from: the pairs and the validated model. */
async function alignmentInputs(deps: Deps, input: { runId: string; spec: PipelineSpec; specDir?: string; model: ArtifactRef }, dir: string) {
  return {
    // rlhf.source "labels": the pairs people labeled in the dashboard instead of a dataset.
    prefs:
      input.spec.rlhf.source === 'labels'
        ? await labeledPreferences(deps, input.runId, dir)
        : input.spec.rlhf.source === 'feedback'
          ? await feedbackPreferences(deps, input.spec, input.specDir, dir)
          : await preparePreferences(deps, input.spec, input.specDir, dir),
    modelTar: await deps.store.download(input.model, path.join(dir, 'model.tar')),
  };
}

/**
 * One trainer job of the RLHF stage, the shape DPO, the reward model and RL share: run the trainer, record
 * each step's figures as metrics and heartbeat, store the model it writes, and record that artifact (with
 * `alsoRecord`, the pairs it learned from) and its lineage to its parents.
 */
async function alignmentJob(
  deps: Deps,
  dir: string,
  job: {
    runId: string;
    command: 'dpo' | 'reward' | 'rl';
    /** The trainer's config, less `output_dir`. */
    config: Record<string, unknown>;
    /** The metric each numeric field of a step event is recorded as; a field a step does not carry is skipped. */
    metrics: Record<string, string>;
    output: { kind: ArtifactKind; name: string };
    alsoRecord?: ArtifactRef[];
    parents: Array<{ ref: ArtifactRef; relation: string }>;
  },
): Promise<{ ref: ArtifactRef; finished: TrainerEvent }> {
  const ctx = Context.current();
  const metrics = new MetricBuffer(deps.db, job.runId, 'rlhf');
  const outDir = path.join(dir, 'out');
  const { finished } = await runTrainer(deps, job.command, { ...job.config, output_dir: outDir }, dir, async (e) => {
    if (e.event !== 'step') return;
    for (const [field, metric] of Object.entries(job.metrics)) {
      if (e[field] !== undefined && e[field] !== null) metrics.add(metric, Number(e.step), Number(e[field]));
    }
    ctx.heartbeat({ step: e.step });
    await metrics.maybeFlush();
  });
  await metrics.flush();
  const ref = await deps.store.putFile(path.join(outDir, 'model.tar'), job.output.kind, job.output.name);
  await recordArtifacts(deps.db, job.runId, 'rlhf', [...(job.alsoRecord ?? []), ref]);
  await recordLineage(deps.db, job.runId, job.parents.map((p) => ({ parent: node.artifact(p.ref), child: node.artifact(ref), relation: p.relation })));
  return { ref, finished };
}

/** DPO: the model learns straight from the preference pairs. */
export async function rlhf(deps: Deps, input: { runId: string; spec: PipelineSpec; specDir?: string; model: ArtifactRef }): Promise<RlhfResult> {
  const { spec } = input;
  return withScratch(deps, async (dir) => {
    const { prefs, modelTar } = await alignmentInputs(deps, input, dir);
    const { ref: model, finished } = await alignmentJob(deps, dir, {
      runId: input.runId,
      command: 'dpo',
      config: {
        model: modelTar,
        preferences: prefs.path,
        steps: spec.rlhf.steps,
        batch_size: spec.rlhf.batchSize,
        learning_rate: spec.rlhf.learningRate,
        beta: spec.rlhf.beta,
        seed: spec.train.seed,
        device: 'auto',
      },
      metrics: { loss: 'dpo_loss', reward_accuracy: 'reward_accuracy' },
      output: { kind: 'model', name: 'model.tar' },
      alsoRecord: [prefs.ref],
      parents: [
        { ref: input.model, relation: 'aligned-into' },
        { ref: prefs.ref, relation: 'preferences-for' },
      ],
    });
    log('aligned with DPO', { pairs: prefs.kept, dropped: prefs.dropped, steps: finished.step, rewardAccuracy: finished.reward_accuracy });
    return { model, method: 'dpo', steps: Number(finished.step), rewardAccuracy: Number(finished.reward_accuracy) };
  });
}

/** RL, first half: a reward model (the SFT model with a scalar head) trained on the preference pairs. */
export async function rewardModel(
  deps: Deps,
  input: { runId: string; spec: PipelineSpec; specDir?: string; model: ArtifactRef },
): Promise<RewardModelResult> {
  const { spec } = input;
  return withScratch(
    deps,
    async (dir) => {
      const { prefs, modelTar } = await alignmentInputs(deps, input, dir);
      const { ref: rewardModelRef, finished } = await alignmentJob(deps, dir, {
        runId: input.runId,
        command: 'reward',
        config: {
          base_model: modelTar,
          preferences: prefs.path,
          steps: spec.rlhf.reward.steps,
          batch_size: spec.rlhf.batchSize,
          learning_rate: spec.rlhf.reward.learningRate,
          seed: spec.train.seed,
          device: 'auto',
        },
        metrics: { loss: 'reward_model_loss', accuracy: 'reward_model_accuracy' },
        output: { kind: 'reward-model', name: 'reward-model.tar' },
        alsoRecord: [prefs.ref],
        parents: [
          { ref: input.model, relation: 'reward-model-from' },
          { ref: prefs.ref, relation: 'preferences-for' },
        ],
      });
      log('reward model trained', { pairs: finished.pairs, accuracy: finished.reward_accuracy, before: finished.initial_reward_accuracy });
      return {
        rewardModel: rewardModelRef,
        preferences: prefs.ref,
        rewardAccuracy: Number(finished.reward_accuracy),
        initialRewardAccuracy: Number(finished.initial_reward_accuracy),
      };
    },
    'rlhf',
  );
}

/** RL, second half: online RL (GRPO) of the model against the reward model, with a KL penalty to where it started. */
export async function rl(
  deps: Deps,
  input: { runId: string; spec: PipelineSpec; model: ArtifactRef; rewardModel: ArtifactRef; preferences: ArtifactRef },
): Promise<RlhfResult> {
  const { spec } = input;
  return withScratch(
    deps,
    async (dir) => {
      const [policy, reward, prompts] = await Promise.all([
        deps.store.download(input.model, path.join(dir, 'policy.tar')),
        deps.store.download(input.rewardModel, path.join(dir, 'reward-model.tar')),
        deps.store.download(input.preferences, path.join(dir, 'prompts.jsonl')),
      ]);
      const { ref: model, finished } = await alignmentJob(deps, dir, {
        runId: input.runId,
        command: 'rl',
        config: {
          policy,
          reward_model: reward,
          prompts,
          steps: spec.rlhf.steps,
          batch_size: spec.rlhf.batchSize,
          num_generations: spec.rlhf.numGenerations,
          max_new_tokens: spec.rlhf.maxNewTokens,
          temperature: spec.rlhf.temperature ?? 1,
          learning_rate: spec.rlhf.learningRate,
          beta: spec.rlhf.beta,
          seed: spec.train.seed,
          device: 'auto',
        },
        metrics: { loss: 'rl_loss', reward: 'reward', kl: 'kl' },
        output: { kind: 'model', name: 'model.tar' },
        parents: [
          { ref: input.model, relation: 'aligned-into' },
          { ref: input.rewardModel, relation: 'rewarded-by' },
        ],
      });
      log('aligned with RL', { steps: finished.step, reward: finished.reward_mean, initialReward: finished.initial_reward_mean, kl: finished.kl });
      return { model, method: 'rl', steps: Number(finished.step) };
    },
    'rlhf',
  );
}
