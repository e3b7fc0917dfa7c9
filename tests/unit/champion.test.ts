/**
 * The champion rule on intervals (activities/src/test.ts `verdictOf`) and its wording for the gate and the inbox
 * (@tempered/contract `championShortfall`, `describeInterval`): noise that straddles the margin decides neither way.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChampionComparison, championShortfall, describeInterval } from '@tempered/contract';
import { verdictOf } from '../../activities/src/test';

const ci = (value: number, low: number, high: number, n = 200) => ({ value, low, high, n });

describe('verdictOf', () => {
  test('better only when the whole interval is at or above the margin', () => {
    assert.equal(verdictOf(ci(0.1, 0.05, 0.15), 0), 'better');
    assert.equal(verdictOf(ci(0.1, 0.05, 0.15), 0.05), 'better', 'the bound on the margin counts');
    assert.equal(verdictOf(ci(0.1, 0.05, 0.15), 0.06), 'unsure');
  });
  test('worse only when the whole interval is below the margin', () => {
    assert.equal(verdictOf(ci(-0.1, -0.15, -0.05), 0), 'worse');
    assert.equal(verdictOf(ci(0.02, -0.01, 0.04), 0.05), 'worse', 'better than the champion, but short of the margin asked for');
  });
  test('a difference of 0.01 on a couple of hundred records is noise, not a verdict', () => {
    assert.equal(verdictOf(ci(-0.01, -0.04, 0.02), 0), 'unsure');
    assert.equal(verdictOf(ci(0.01, -0.02, 0.04), 0), 'unsure');
  });
});

describe('the words of the gate', () => {
  const lost: ChampionComparison = {
    modelVersionId: 'mv', version: 3, championExactMatch: 0.95, challengerExactMatch: 0.9, winRate: 0.25, margin: 0, examples: 200,
    challengerWins: false, difference: ci(-0.05, -0.085, -0.015), verdict: 'worse', pValue: 0.0042, regressions: 12,
  };
  test('say how sure the comparison is', () => {
    assert.equal(
      championShortfall(lost),
      "the challenger's exact match 0.900 does not beat the serving model's 0.950 by test.championMargin 0: the difference is -0.050 (95% interval -0.085 to -0.015, n = 200 paired records), all of it below the margin, McNemar p = 0.0042",
    );
    assert.equal(describeInterval(ci(0.712, 0.65, 0.77, 238)), '0.712 (95% interval 0.650 to 0.770, n = 238 records)');
  });
  test('runs tested before intervals keep their message', () => {
    const { difference: _d, verdict: _v, pValue: _p, regressions: _r, ...old } = lost;
    assert.equal(championShortfall(old), "the challenger's exact match 0.900 does not beat the serving model's 0.950 by test.championMargin 0");
  });
});
