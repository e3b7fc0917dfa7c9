/**
 * rlhf: aligns the validated model with human preferences by DPO (TRL's DPOTrainer) on preference pairs
 * from the spec's source. Malformed pairs are dropped and counted, not fed to the trainer.
 */
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { Context } from '@temporalio/activity';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, RlhfResult } from '@tempered/workflows';
import { node, recordArtifacts, recordLineage } from '@tempered/db';
import { type Deps, badInput, log, withScratch } from './context';
import { MetricBuffer } from './metrics';
import { stageSource } from './sources';
import { runTrainer } from './trainer';

/** Keeps well-formed `{prompt, chosen, rejected}` lines; returns how many were kept and dropped. */
async function filterPreferences(source: string, out: string): Promise<{ kept: number; dropped: number }> {
  const sink = createWriteStream(out);
  let kept = 0;
  let dropped = 0;
  for await (const line of createInterface({ input: createReadStream(source, 'utf8'), crlfDelay: Infinity })) {
    if (!line.trim()) continue;
    try {
      const p = JSON.parse(line);
      const ok = ['prompt', 'chosen', 'rejected'].every((k) => typeof p[k] === 'string' && p[k].length > 0) && p.chosen !== p.rejected;
      if (!ok) throw new Error('bad pair');
      if (!sink.write(`${JSON.stringify({ prompt: p.prompt.normalize('NFKC'), chosen: p.chosen.normalize('NFKC'), rejected: p.rejected.normalize('NFKC') })}\n`)) {
        await new Promise<void>((r) => sink.once('drain', () => r()));
      }
      kept++;
    } catch {
      dropped++;
    }
  }
  await new Promise<void>((resolve, reject) => sink.end((err?: Error | null) => (err ? reject(err) : resolve())));
  return { kept, dropped };
}

export async function rlhf(deps: Deps, input: { runId: string; spec: PipelineSpec; specDir?: string; model: ArtifactRef }): Promise<RlhfResult> {
  const { runId, spec } = input;
  const ctx = Context.current();
  if (!spec.rlhf.preferences) throw badInput('rlhf.preferences is required for method dpo');
  return withScratch(deps, async (dir) => {
    const source = await stageSource(deps, spec.rlhf.preferences!.uri, input.specDir, dir, 0);
    const prefsPath = path.join(dir, 'preferences.jsonl');
    const { kept, dropped } = await filterPreferences(source, prefsPath);
    if (kept === 0) throw badInput(`rlhf.preferences: no well-formed {prompt, chosen, rejected} pairs (${dropped} malformed)`);
    const preferences = await deps.store.putFile(prefsPath, 'preferences', 'preferences.jsonl');
    const modelTar = await deps.store.download(input.model, path.join(dir, 'model.tar'));

    const metrics = new MetricBuffer(deps.db, runId, 'rlhf');
    const outDir = path.join(dir, 'out');
    const { finished } = await runTrainer(
      deps,
      'dpo',
      {
        model: modelTar,
        preferences: prefsPath,
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
    await recordArtifacts(deps.db, runId, 'rlhf', [preferences, model]);
    await recordLineage(deps.db, runId, [
      { parent: node.artifact(input.model), child: node.artifact(model), relation: 'aligned-into' },
      { parent: node.artifact(preferences), child: node.artifact(model), relation: 'preferences-for' },
    ]);
    log('aligned with DPO', { pairs: kept, dropped, steps: finished.step, rewardAccuracy: finished.reward_accuracy });
    return { model, method: 'dpo', steps: Number(finished.step) };
  });
}
