"""Free-text scores of an answer against its reference, each in [0, 1] per example (eval's `text_metrics`):

  rouge_l  ROUGE-L F-measure (longest common subsequence), Google's `rouge-score`, over words, with each CJK
           character a word of its own: rouge-score's default tokenizer keeps only [a-z0-9] and would score
           Chinese or Japanese text 0 whatever it says.
  chrf     chrF (character n-gram F-score, n up to 6, beta 2) of sacrebleu, divided by 100: characters, so it
           needs no word boundaries.

Sentence-level scores, averaged over examples (their bootstrap interval comes from stats.py); corpus-level chrF
would weight long answers more.
"""

import re

from rouge_score import rouge_scorer
from sacrebleu.metrics import CHRF

# CJK ideographs, kana and hangul: scripts written without spaces between words.
_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


class _Tokenizer:
    """Lower-cased words and single CJK characters, punctuation kept attached (rouge-score's tokenizer interface)."""

    def tokenize(self, text: str):
        return _TOKEN.findall(text.lower())


_ROUGE = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokenizer())
_CHRF = CHRF()


def rouge_l(answer: str, reference: str) -> float:
    return float(_ROUGE.score(reference, answer)["rougeL"].fmeasure)


def chrf(answer: str, reference: str) -> float:
    return float(_CHRF.sentence_score(answer, [reference]).score) / 100


TEXT_METRICS = {"rouge_l": rouge_l, "chrf": chrf}
