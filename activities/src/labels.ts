/**
 * Human labels as the source of RLHF preferences (`rlhf.source: labels`). `proposePairs` samples two responses
 * of the validated model to prompts of the cleaned data and stores them as preference pairs for people to label
 * in the dashboard; the workflow then waits for `rlhf.labels.required` labels, and `labeledPreferences` turns
 * the labeled pairs into the `{prompt, chosen, rejected}` file that DPO and the reward model train on.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef } from '@tempered/contract';
import { notifyChange } from '@tempered/db';
import { type Deps, badInput, log, withScratch } from './context';
import { JsonlWriter, lastUserText, readJsonl, readRecords } from './records';
import { runTrainer } from './trainer';

export interface ProposePairsResult {
  /** Pairs of this run waiting for (or given) a label. */
  pairs: number;
  /** Labels the run waits for: the spec's `rlhf.labels.required`, at most `pairs`. */
  required: number;
}

/** The source of pairs sampled from the run's own model (the table also takes production feedback). */
const SOURCE = 'model-samples';
/** Prompts sampled per pair wanted: the pairs whose two responses differ are kept, the rest dropped. */
const OVERSAMPLE = 3;

/**
 * The `limit` prompts of the cleaned records with the smallest sha256, each once: a deterministic choice (a
 * retry picks the same), spread over the data rather than its head, in memory bounded by the limit.
 */
async function pickPrompts(file: string, limit: number): Promise<string[]> {
  let picked: Array<{ hash: string; prompt: string }> = [];
  const trim = () => {
    picked.sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
    picked = picked.filter((p, i) => i === 0 || p.hash !== picked[i - 1].hash).slice(0, limit);
  };
  for await (const record of readRecords(file)) {
    // What a person judges the two answers against: a turn's prompt, a conversation's last user message;
    // a plain text asks nothing, so it is skipped.
    const prompt = lastUserText(record);
    if (!prompt?.trim()) continue;
    picked.push({ hash: createHash('sha256').update(prompt).digest('hex'), prompt });
    if (picked.length >= 4 * limit) trim();
  }
  trim();
  return picked.map((p) => p.prompt);
}

async function countPairs(deps: Deps, runId: string): Promise<number> {
  const row = await deps.db
    .selectFrom('preference_pairs')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('run_id', '=', runId)
    .where('source', '=', SOURCE)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/**
 * Samples two responses of `model` to prompts of `cleaned` and stores the pairs whose responses differ, up to
 * `rlhf.labels.pairs` (default 1.5 × required), for labeling. Idempotent: pairs are inserted in one statement
 * keyed by (run, idx), and a retry that finds them stored returns them without sampling again.
 */
export async function proposePairs(
  deps: Deps,
  input: { runId: string; spec: PipelineSpec; model: ArtifactRef; cleaned: ArtifactRef },
): Promise<ProposePairsResult> {
  const { runId, spec } = input;
  const labels = spec.rlhf.labels;
  const wanted = labels.pairs ?? Math.ceil(1.5 * labels.required);
  const result = (pairs: number): ProposePairsResult => ({ pairs, required: Math.min(labels.required, pairs) });
  return withScratch(
    deps,
    async (dir) => {
      const stored = await countPairs(deps, runId);
      if (stored > 0) {
        log('preference pairs already proposed', { pairs: stored });
        return result(stored);
      }
      const cleaned = await deps.store.download(input.cleaned, path.join(dir, 'cleaned.jsonl'));
      const prompts = await pickPrompts(cleaned, OVERSAMPLE * wanted);
      if (prompts.length === 0) throw badInput('rlhf.source is "labels" but the cleaned data has no prompts to sample responses for');
      const promptsPath = path.join(dir, 'prompts.jsonl');
      const sink = new JsonlWriter(promptsPath);
      for (const prompt of prompts) await sink.write({ prompt });
      await sink.close();

      const model = await deps.store.download(input.model, path.join(dir, 'model.tar'));
      const outDir = path.join(dir, 'out');
      const ctx = Context.current();
      const { finished } = await runTrainer(
        deps,
        'sample',
        {
          model,
          prompts: promptsPath,
          output_dir: outDir,
          samples: 2,
          temperature: labels.temperature,
          max_new_tokens: labels.maxNewTokens,
          seed: spec.train.seed,
          device: 'auto',
        },
        dir,
        (e) => {
          if (e.event === 'started' || e.event === 'progress') ctx.heartbeat({ sampling: prompts.length, done: e.done ?? 0 });
        },
      );

      // Identical responses leave nothing to choose between: only pairs that differ are offered.
      const pairs: Array<{ prompt: string; a: string; b: string }> = [];
      for await (const { value } of readJsonl<{ prompt: string; responses: string[] }>(path.join(outDir, 'samples.jsonl'))) {
        const [a, b] = value.responses;
        if (a !== b && pairs.length < wanted) pairs.push({ prompt: value.prompt, a, b });
      }
      if (pairs.length === 0) {
        throw badInput(
          `the model gave two identical responses to each of the ${prompts.length} sampled prompts, so there is nothing to label; ` +
            `raise rlhf.labels.temperature (now ${labels.temperature}) or rlhf.labels.maxNewTokens`,
        );
      }
      const inserted = await deps.db
        .insertInto('preference_pairs')
        .values(pairs.map((p, idx) => ({ run_id: runId, idx, prompt: p.prompt, response_a: p.a, response_b: p.b, source: SOURCE })))
        .onConflict((oc) => oc.columns(['run_id', 'idx']).doNothing())
        .executeTakeFirst();
      await notifyChange(deps.db, runId, 'labels');
      const total = await countPairs(deps, runId);
      log('preference pairs proposed', {
        sampled: Number(finished.prompts),
        distinct: Number(finished.distinct),
        inserted: Number(inserted.numInsertedOrUpdatedRows ?? 0),
        pairs: total,
      });
      return result(total);
    },
    'rlhf',
  );
}

/**
 * The run's labeled pairs as `{prompt, chosen, rejected}` JSONL, stored as a `preferences` artifact: label `a`
 * prefers response_a, `b` response_b; ties are skipped (counted as dropped). Same shape as a staged dataset.
 */
export async function labeledPreferences(deps: Deps, runId: string, dir: string) {
  const rows = await deps.db
    .selectFrom('preference_pairs')
    .select(['prompt', 'response_a', 'response_b', 'label'])
    .where('run_id', '=', runId)
    .where('label', 'is not', null)
    .orderBy('idx')
    .orderBy('id')
    .execute();
  if (rows.length === 0) throw badInput('rlhf.source is "labels" but no pair of this run is labeled; label at least one pair A or B');
  const file = path.join(dir, 'preferences.jsonl');
  const sink = new JsonlWriter(file);
  for (const r of rows) {
    if ((r.label !== 'a' && r.label !== 'b') || r.response_a === r.response_b) continue;
    const [chosen, rejected] = r.label === 'a' ? [r.response_a, r.response_b] : [r.response_b, r.response_a];
    await sink.write({ prompt: r.prompt, chosen, rejected });
  }
  await sink.close();
  if (sink.lines === 0) throw badInput(`all ${rows.length} labels were ties; label at least one pair A or B`);
  const ref = await deps.store.putFile(file, 'preferences', 'preferences.jsonl');
  log('preferences from labels', { pairs: sink.lines, ties: rows.length - sink.lines });
  return { path: file, ref, kept: sink.lines, dropped: rows.length - sink.lines };
}
