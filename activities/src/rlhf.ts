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
import type { ArtifactRef, RewardModelResult, RlhfResult } from '@tempered/contract';
import { feedbackPreferencePairs, node, recordArtifacts, recordLineage } from '@tempered/db';
import { cleanText } from '@tempered/text';
import { type Deps, badInput, log, withScratch } from './context';
import { labeledPreferences } from './labels';
import { MetricBuffer } from './metrics';
import { JsonlWriter, readLines } from './records';
import { stageSource } from './sources';
import { runTrainer } from './trainer';

/**
 * Keeps well-formed `{prompt, chosen, rejected}` lines, their texts normalized by the run's own clean rules (NFKC,
 * control characters, whitespace; PII masking is for training data), so DPO sees a prompt exactly as SFT and
 * serving do; counts the rest.
 */
async function filterPreferences(source: string, out: string, spec: PipelineSpec): Promise<{ kept: number; dropped: number }> {
  const rules = { ...spec.clean, maskPii: false };
  const clean = (text: string) => cleanText(text, rules).text;
  const sink = new JsonlWriter(out);
  let dropped = 0;
  try {
    for await (const { text } of readLines(source)) {
      if (!text.trim()) continue;
      let p: Record<string, unknown>;
      try {
        p = JSON.parse(text);
      } catch {
        p = {};
      }
      if (typeof p?.prompt !== 'string' || typeof p?.chosen !== 'string' || typeof p?.rejected !== 'string') {
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

/** Stages the spec's preference source, keeps the well-formed pairs, and stores them as an artifact. */
async function preparePreferences(deps: Deps, spec: PipelineSpec, specDir: string | undefined, dir: string) {
  if (!spec.rlhf.preferences) throw badInput('rlhf.preferences is required unless rlhf.method is "none"');
  const source = await stageSource(deps, spec.rlhf.preferences.uri, specDir, dir, 0);
  const path_ = path.join(dir, 'preferences.jsonl');
  const { kept, dropped } = await filterPreferences(source, path_, spec);
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
  if (spec.rlhf.preferences) base = await filterPreferences(await stageSource(deps, spec.rlhf.preferences.uri, specDir, dir, 0), path_, spec);
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

/** What DPO and the reward model both start from: the pairs, the validated model, a metric buffer, an output dir. */
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
    metrics: new MetricBuffer(deps.db, input.runId, 'rlhf'),
    outDir: path.join(dir, 'out'),
  };
}

/** DPO: the model learns straight from the preference pairs. */
export async function rlhf(deps: Deps, input: { runId: string; spec: PipelineSpec; specDir?: string; model: ArtifactRef }): Promise<RlhfResult> {
  const { runId, spec } = input;
  const ctx = Context.current();
  return withScratch(deps, async (dir) => {
    const { prefs, modelTar, metrics, outDir } = await alignmentInputs(deps, input, dir);
    const { finished } = await runTrainer(
      deps,
      'dpo',
      {
        model: modelTar,
        preferences: prefs.path,
        output_dir: outDir,
        steps: spec.rlhf.steps,
        batch_size: spec.rlhf.batchSize,
        learning_rate: spec.rlhf.learningRate,
        beta: spec.rlhf.beta,
        seed: spec.train.seed,
        device: 'auto',
      },
      dir,
      async (e) => {
        if (e.event !== 'step') return;
        metrics.add('dpo_loss', Number(e.step), Number(e.loss));
        if (e.reward_accuracy !== undefined) metrics.add('reward_accuracy', Number(e.step), Number(e.reward_accuracy));
        ctx.heartbeat({ step: e.step });
        await metrics.maybeFlush();
      },
    );
    await metrics.flush();
    const model = await deps.store.putFile(path.join(outDir, 'model.tar'), 'model', 'model.tar');
    await recordArtifacts(deps.db, runId, 'rlhf', [prefs.ref, model]);
    await recordLineage(deps.db, runId, [
      { parent: node.artifact(input.model), child: node.artifact(model), relation: 'aligned-into' },
      { parent: node.artifact(prefs.ref), child: node.artifact(model), relation: 'preferences-for' },
    ]);
    log('aligned with DPO', { pairs: prefs.kept, dropped: prefs.dropped, steps: finished.step, rewardAccuracy: finished.reward_accuracy });
    return { model, method: 'dpo', steps: Number(finished.step), rewardAccuracy: Number(finished.reward_accuracy) };
  });
}

/** RL, first half: a reward model (the SFT model with a scalar head) trained on the preference pairs. */
export async function rewardModel(
  deps: Deps,
  input: { runId: string; spec: PipelineSpec; specDir?: string; model: ArtifactRef },
): Promise<RewardModelResult> {
  const { runId, spec } = input;
  const ctx = Context.current();
  return withScratch(
    deps,
    async (dir) => {
      const { prefs, modelTar, metrics, outDir } = await alignmentInputs(deps, input, dir);
      const { finished } = await runTrainer(
        deps,
        'reward',
        {
          base_model: modelTar,
          preferences: prefs.path,
          output_dir: outDir,
          steps: spec.rlhf.reward.steps,
          batch_size: spec.rlhf.batchSize,
          learning_rate: spec.rlhf.reward.learningRate,
          seed: spec.train.seed,
          device: 'auto',
        },
        dir,
        async (e) => {
          if (e.event !== 'step') return;
          metrics.add('reward_model_loss', Number(e.step), Number(e.loss));
          metrics.add('reward_model_accuracy', Number(e.step), Number(e.accuracy));
          ctx.heartbeat({ step: e.step });
          await metrics.maybeFlush();
        },
      );
      await metrics.flush();
      const rewardModelRef = await deps.store.putFile(path.join(outDir, 'model.tar'), 'reward-model', 'reward-model.tar');
      await recordArtifacts(deps.db, runId, 'rlhf', [prefs.ref, rewardModelRef]);
      await recordLineage(deps.db, runId, [
        { parent: node.artifact(input.model), child: node.artifact(rewardModelRef), relation: 'reward-model-from' },
        { parent: node.artifact(prefs.ref), child: node.artifact(rewardModelRef), relation: 'preferences-for' },
      ]);
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
  const { runId, spec } = input;
  const ctx = Context.current();
  return withScratch(
    deps,
    async (dir) => {
      const [policy, reward, prompts] = await Promise.all([
        deps.store.download(input.model, path.join(dir, 'policy.tar')),
        deps.store.download(input.rewardModel, path.join(dir, 'reward-model.tar')),
        deps.store.download(input.preferences, path.join(dir, 'prompts.jsonl')),
      ]);
      const metrics = new MetricBuffer(deps.db, runId, 'rlhf');
      const outDir = path.join(dir, 'out');
      const { finished } = await runTrainer(
        deps,
        'rl',
        {
          policy,
          reward_model: reward,
          prompts,
          output_dir: outDir,
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
        dir,
        async (e) => {
          if (e.event !== 'step') return;
          metrics.add('rl_loss', Number(e.step), Number(e.loss));
          metrics.add('reward', Number(e.step), Number(e.reward));
          if (e.kl !== null && e.kl !== undefined) metrics.add('kl', Number(e.step), Number(e.kl));
          ctx.heartbeat({ step: e.step });
          await metrics.maybeFlush();
        },
      );
      await metrics.flush();
      const model = await deps.store.putFile(path.join(outDir, 'model.tar'), 'model', 'model.tar');
      await recordArtifacts(deps.db, runId, 'rlhf', [model]);
      await recordLineage(deps.db, runId, [
        { parent: node.artifact(input.model), child: node.artifact(model), relation: 'aligned-into' },
        { parent: node.artifact(input.rewardModel), child: node.artifact(model), relation: 'rewarded-by' },
      ]);
      log('aligned with RL', { steps: finished.step, reward: finished.reward_mean, initialReward: finished.initial_reward_mean, kl: finished.kl });
      return { model, method: 'rl', steps: Number(finished.step) };
    },
    'rlhf',
  );
}
