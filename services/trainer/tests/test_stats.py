"""stats.py against hand-computed values: bootstrap intervals, the paired difference, McNemar's exact test."""

import math

import pytest

from tempered_trainer.stats import bootstrap, bootstrap_statistic, mcnemar, paired_difference


def test_a_constant_score_has_no_spread():
    assert bootstrap([1] * 10) == {"value": 1.0, "low": 1.0, "high": 1.0, "n": 10}
    assert bootstrap([]) == {"value": 0.0, "low": 0.0, "high": 0.0, "n": 0}


def test_the_interval_holds_the_value_and_matches_the_normal_approximation():
    # 60 right of 100: the standard error is sqrt(.6 * .4 / 100) = 0.049, so the 95% interval is about 0.6 ± 0.096.
    ci = bootstrap([1] * 60 + [0] * 40)
    assert ci["value"] == pytest.approx(0.6) and ci["n"] == 100
    assert ci["low"] == pytest.approx(0.6 - 1.96 * math.sqrt(0.24 / 100), abs=0.02)
    assert ci["high"] == pytest.approx(0.6 + 1.96 * math.sqrt(0.24 / 100), abs=0.02)


def test_the_interval_narrows_as_n_grows():
    widths = [(lambda c: c["high"] - c["low"])(bootstrap([1, 0] * n)) for n in (10, 100, 1000)]
    assert widths[0] > widths[1] > widths[2] > 0
    # The width shrinks with sqrt(n): ten times the examples, about a third of the width.
    assert widths[1] / widths[2] == pytest.approx(math.sqrt(10), rel=0.15)


def test_it_is_seeded():
    scores = [1, 0, 0, 1, 1, 1, 0, 1]
    assert bootstrap(scores) == bootstrap(scores)


def test_a_whole_sample_statistic():
    # The statistic of the sample itself is the value; the interval surrounds it.
    ci = bootstrap_statistic(list(range(20)), lambda rows: max(rows) - min(rows))
    assert ci["value"] == 19 and ci["high"] == 19 and ci["low"] < 19 and ci["n"] == 20


def test_pairing_cancels_what_both_models_get_right():
    # 100 examples, both right on the same 80; a also right on 10 more. Unpaired, each accuracy wobbles by ±0.06;
    # paired, the difference 0.10 only wobbles with the 10 discordant examples, so its interval excludes 0.
    a = [1] * 90 + [0] * 10
    b = [1] * 80 + [0] * 20
    diff = paired_difference(a, b)
    assert diff["value"] == pytest.approx(0.1) and diff["low"] > 0 and diff["n"] == 100
    with pytest.raises(ValueError):
        paired_difference([1], [1, 0])


def test_mcnemar_exact():
    # 10 discordant examples all one way: p = 2 * (1/2)^10.
    assert mcnemar(10, 0) == pytest.approx(2 / 1024)
    # 6 against 4: two-sided p = 2 * P(X <= 4 | n=10, 1/2) = 2 * 386/1024, capped at 1 when balanced.
    assert mcnemar(6, 4) == pytest.approx(2 * 386 / 1024)
    assert mcnemar(5, 5) == 1.0 and mcnemar(0, 0) == 1.0


def test_text_metrics_against_hand_computed_values():
    from tempered_trainer.text_metrics import chrf, rouge_l

    # LCS of "the cat sat" and "the cat sat on the mat" is 3 words: P = 3/3, R = 3/6, F = 2PR/(P+R) = 2/3.
    assert rouge_l("the cat sat", "the cat sat on the mat") == pytest.approx(2 / 3)
    assert rouge_l("The Cat", "the cat") == 1.0 and rouge_l("dog", "cat") == 0.0
    # Chinese without spaces: one character of each word; LCS of 很好吃 and 很好 is 2: P = 2/3, R = 1, F = 0.8.
    assert rouge_l("很好吃", "很好") == pytest.approx(0.8)
    assert chrf("abc", "abc") == pytest.approx(1.0) and chrf("xyz", "abc") == 0.0
    assert 0 < chrf("这个很好吃", "这个很好") < 1
