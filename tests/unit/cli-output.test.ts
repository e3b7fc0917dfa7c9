/** The CLI's stage summaries for people: intervals, artifacts and lists inline, the optimize stage as one line per type. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { OptimizeResult } from '@tempered/api-contract';
import { formatSummary, formatValue, stageLine } from '../../services/cli/src/output';

test('numbers keep four significant digits; intervals, artifacts, lists and objects read inline', () => {
  assert.equal(formatValue(0.358512), '0.3585');
  assert.equal(formatValue(42), '42');
  assert.equal(formatValue({ value: 0.6, low: 0.508333, high: 0.683333, n: 120 }), '0.6 [0.5083–0.6833] n 120');
  assert.equal(formatValue({ uri: 's3://tempered/answers/ab.jsonl', sha256: 'ab', bytes: 10, kind: 'answers' }), 's3://tempered/answers/ab.jsonl');
  assert.equal(formatValue([1, 'a']), '[1, a]');
  assert.equal(formatValue({ name: 'more', metrics: { accuracy: { value: 0.6, low: 0.5, high: 0.7, n: 120 } } }), '{name more, metrics {accuracy 0.6 [0.5–0.7] n 120}}');
  assert.equal(formatSummary({ input: 2305, loss: 0.017234 }), ' input 2305 · loss 0.01723');
  assert.equal(formatSummary(null), '');
});

test('the optimize stage: each type with its size, speed and worst loss against the tolerance, and what deploys', () => {
  const file = { uri: 's3://x', sha256: 'x', bytes: 1, kind: 'model' as const };
  const summary: OptimizeResult = {
    tolerance: 0.02,
    deploys: 'q8_0',
    forms: [
      { type: 'q8_0', bytes: 138_400_000, file, tokensPerSec: 8.31, withinTolerance: true, metrics: [
        { scope: 'test', metric: 'accuracy', value: 0.54, reference: 0.54, change: 0, loss: 0, within: true },
        { scope: 'test', metric: 'perplexity', value: 1.4634, reference: 1.459, change: 0.0044, loss: 0.003, within: true },
      ] },
      { type: 'q4_k_m', bytes: 101_000_000, file, tokensPerSec: null, withinTolerance: false, metrics: [
        { scope: 'more', metric: 'accuracy', value: 0.55, reference: 0.6, change: -0.05, loss: 0.05, within: false },
      ] },
    ],
  };
  assert.equal(
    stageLine('optimize', { status: 'completed', summary: summary as unknown as Record<string, unknown> }),
    '  ✔ optimize  completed q8_0 138.4 MB 8.31 tokens/s, worst test.perplexity +0.3% (within 0.02) · q4_k_m 101.0 MB, worst more.accuracy −0.050 (beyond 0.02) · deploys q8_0',
  );
});
