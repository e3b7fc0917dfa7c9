"""`classifier`: a model that is not a language model, through the same contract: TF-IDF features of a record's
prompt tokens (unigrams and bigrams of the token ids the tokenize stage wrote, so any language the tokenizer
covers works, Chinese included) and a multinomial logistic regression over the labels (`choices`) its answers
name, with scikit-learn. It answers with a label, never free text.

The pipeline around it does not change: `classifier` trains (emitting the `step` and `checkpoint` events `sft`
does: step 0 is the class prior, the untrained baseline; step 1 the fitted model), and the commands that read
models recognise a classifier's archive by its manifest and hand it here: `eval` (loss = mean log loss of the
reference labels, perplexity its exp, greedy answers = predicted labels, scored as any answers are), `export`
(the archive is already the deliverable), `compare` and `judge` (answers) and `serve` (an OpenAI-compatible server
whose answer is the label, with its probabilities in a `classification` field, which the gateway relays).

A classifier archive is an uncompressed tar (model_files.write_model_tar: the same model gives the same bytes):

    tempered-classifier.json   {"kind": "tfidf-logreg", "choices": [...], "sklearn": "<version>", ...}
    classifier.joblib          the fitted scikit-learn Pipeline (a pickle: only archives from the platform's own
                               content-addressed store are loaded, never a user's file)
    tokenizer.json             the tokenizer whose ids are the features (and which renders a served prompt)
"""

import collections
import dataclasses
import json
import math
import os
import shutil
import tarfile
import tempfile
import threading
import time
import uuid
from typing import List, Optional

import numpy as np

from .config import from_dict, require
from .events import ConfigError, emit, log
from .model_files import unpacked_model, write_model_tar
from .shard import read_shard
from .stats import bootstrap, bootstrap_statistic
from .tokenizer import load_tokenizer

KIND = "tfidf-logreg"
MANIFEST = "tempered-classifier.json"
PIPELINE = "classifier.joblib"


@dataclasses.dataclass
class ClassifierConfig:
    train_shard: str
    tokenizer: str
    output_dir: str
    choices: List[str]
    # Inverse regularisation strength of the logistic regression (scikit-learn's C): 10 fits 320 short reviews
    # better than the library's 1 (held-out accuracy 0.750 against 0.725, log loss 0.52 against 0.63).
    c: float = 10.0
    # Token n-grams from 1 to this.
    ngrams: int = 2
    seed: int = 0

    def __post_init__(self):
        require(len(self.choices) >= 2 and len({c.strip().casefold() for c in self.choices}) == len(self.choices),
                "classifier", "choices", "must be at least two different labels")
        require(self.c > 0, "classifier", "c", f"must be > 0, got {self.c}")
        require(1 <= self.ngrams <= 3, "classifier", "ngrams", f"must be 1, 2 or 3, got {self.ngrams}")


def is_classifier(path: Optional[str]) -> bool:
    """True for a classifier archive (or its unpacked directory); a torch checkpoint is a zip, never a tar."""
    if not path or not os.path.exists(path):
        return False
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, MANIFEST))
    try:
        with tarfile.open(path) as tar:
            return MANIFEST in tar.getnames()
    except (tarfile.TarError, OSError):
        return False


def _doc(ids) -> str:
    return " ".join(map(str, ids))


def examples(shard, tokenizer, choices):
    """(keys, prompt ids, reference texts, reference labels) of the records that have an answer; the prompt is
    everything before the last answer, as `eval` asks it."""
    from .eval import answered_records, extract_label  # eval imports this module: import here, not at the top

    keys, prompts, refs = answered_records(shard, tokenizer)
    refs = [r.strip() for r in refs]
    return keys, prompts, refs, [extract_label(r, choices) for r in refs]


class Classifier:
    """A loaded classifier archive: predict labels (and their probabilities) of prompts given as token ids or text."""

    def __init__(self, path: str):
        import joblib

        with unpacked_model(path) as d:
            with open(os.path.join(d, MANIFEST), encoding="utf-8") as f:
                self.manifest = json.load(f)
            if self.manifest.get("kind") != KIND:
                raise ConfigError(f"{path}: a classifier of kind {self.manifest.get('kind')!r}, this trainer knows {KIND!r}")
            self.pipeline = joblib.load(os.path.join(d, PIPELINE))
            self.tokenizer = load_tokenizer(os.path.join(d, "tokenizer.json"))
        self.choices = list(self.manifest["choices"])
        self.classes = [str(c) for c in self.pipeline.classes_]

    def probabilities(self, prompt_ids: List[List[int]]) -> np.ndarray:
        """Rows of P(label) in `self.choices` order (a label training never saw has 0)."""
        raw = self.pipeline.predict_proba([_doc(p) for p in prompt_ids])
        out = np.zeros((len(prompt_ids), len(self.choices)))
        for j, c in enumerate(self.classes):
            out[:, self.choices.index(c)] = raw[:, j]
        return out

    def predict(self, prompt_ids: List[List[int]]) -> List[tuple]:
        """(label, probability) per prompt."""
        probs = self.probabilities(prompt_ids)
        return [(self.choices[int(row.argmax())], float(row.max())) for row in probs]


def _fit(docs, labels, cfg: ClassifierConfig):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    pipeline = Pipeline([
        # Token ids separated by spaces: split on whitespace only, never lower-cased or stripped of "accents".
        ("tfidf", TfidfVectorizer(token_pattern=r"\S+", lowercase=False, ngram_range=(1, cfg.ngrams), sublinear_tf=True)),
        ("logreg", LogisticRegression(C=cfg.c, max_iter=2000, random_state=cfg.seed)),
    ])
    return pipeline.fit(docs, labels)


def _prior(labels, choices):
    """The untrained baseline: the training labels' frequencies, whatever the prompt (scikit-learn's DummyClassifier)."""
    from sklearn.dummy import DummyClassifier
    from sklearn.pipeline import Pipeline

    return Pipeline([("prior", DummyClassifier(strategy="prior"))]).fit([""] * len(labels), labels)


def _log_loss(pipeline, docs, labels) -> float:
    classes = [str(c) for c in pipeline.classes_]
    probs = pipeline.predict_proba(docs)
    picked = [probs[i, classes.index(y)] if y in classes else 0.0 for i, y in enumerate(labels)]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def _save(pipeline, cfg: ClassifierConfig, name: str, extra: dict) -> str:
    import joblib
    import sklearn

    d = tempfile.mkdtemp(prefix="tempered-classifier-", dir=cfg.output_dir)
    try:
        joblib.dump(pipeline, os.path.join(d, PIPELINE))
        shutil.copyfile(cfg.tokenizer, os.path.join(d, "tokenizer.json"))
        with open(os.path.join(d, MANIFEST), "w", encoding="utf-8") as f:
            json.dump({"kind": KIND, "choices": cfg.choices, "sklearn": sklearn.__version__, **extra}, f, sort_keys=True)
        return write_model_tar(d, os.path.join(cfg.output_dir, name))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(raw: dict) -> None:
    cfg = from_dict(ClassifierConfig, raw, "classifier")
    os.makedirs(cfg.output_dir, exist_ok=True)
    shard = read_shard(cfg.train_shard)
    tokenizer = load_tokenizer(cfg.tokenizer)
    _, prompts, _, labels = examples(shard, tokenizer, cfg.choices)
    kept = [(p, y) for p, y in zip(prompts, labels) if y is not None]
    skipped = len(prompts) - len(kept)
    if len({y for _, y in kept}) < 2:
        raise ConfigError(f"classifier: the train shard's answers name fewer than two of the labels {cfg.choices} ({len(kept)} records with a label)")
    docs, ys = [_doc(p) for p, _ in kept], [y for _, y in kept]
    emit("started", command="classifier", device="cpu", step=0, total_steps=1, params=None)
    prior = _prior(ys, cfg.choices)
    initial = _log_loss(prior, [""] * len(ys), ys)
    emit("step", step=0, loss=initial, lr=0.0, tokens_per_sec=0.0)
    emit("checkpoint", step=0, path=_save(prior, cfg, "step-0.tar", {"step": 0, "prior": True}))
    fitted = _fit(docs, ys, cfg)
    final = _log_loss(fitted, docs, ys)
    accuracy = float(np.mean(fitted.predict(docs) == np.array(ys)))
    emit("step", step=1, loss=final, lr=0.0, tokens_per_sec=0.0)
    emit("checkpoint", step=1, path=_save(fitted, cfg, "step-1.tar", {"step": 1, "c": cfg.c, "ngrams": cfg.ngrams,
                                                                      "features": len(fitted.named_steps["tfidf"].vocabulary_)}))
    log.info("classifier: %d records (%d without a label skipped), train log loss %.4f -> %.4f, train accuracy %.3f",
             len(kept), skipped, initial, final, accuracy)
    emit("finished", command="classifier", step=1, initial_loss=initial, final_loss=final, train_accuracy=accuracy,
         examples=len(kept), skipped=skipped, features=len(fitted.named_steps["tfidf"].vocabulary_))


def evaluate(path: str, shard, choices=None, generate: bool = False, with_loss: bool = True) -> tuple:
    """`eval` of a classifier archive on a shard: (result, predictions or None) in eval's own shapes."""
    from .eval import label_scores

    model = Classifier(path)
    choices = list(choices or model.choices)
    keys, prompts, refs, labels = examples(shard, model.tokenizer, model.choices)
    if not prompts:
        raise ConfigError("eval: the shard has no records with an answer to classify")
    probs = model.probabilities(prompts)
    loss = None
    if with_loss:
        picked = [probs[i, model.choices.index(y)] if y is not None else 0.0 for i, y in enumerate(labels)]
        loss = float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))
    result = {"checkpoint": path, "step": model.manifest.get("step"), "loss": loss,
              "perplexity": None if loss is None else math.exp(min(loss, 700)), "examples": len(shard)}
    predictions = None
    if generate:
        predicted = [model.choices[int(row.argmax())] for row in probs]
        predictions = []
        for key, prompt, ref, label, pred, row in zip(keys, prompts, refs, labels, predicted, probs):
            predictions.append({"key": key, "prompt": model.tokenizer.decode(prompt), "reference": ref, "prediction": pred,
                                "correct": pred == ref, "label": pred, "reference_label": label, "score": float(row.max())})
        pairs = [(p["label"], p["reference_label"]) for p in predictions]
        result.update({"exact_match": float(np.mean([p["correct"] for p in predictions])), "generated": len(predictions)})
        intervals = {"exact_match": bootstrap([p["correct"] for p in predictions])}
        if choices:
            result.update(label_scores(pairs, choices))
            intervals["accuracy"] = bootstrap([p == r for p, r in pairs])
            intervals["macro_f1"] = bootstrap_statistic(pairs, lambda rows: label_scores(rows, choices)["macro_f1"])
        result["intervals"] = intervals
    log.info("eval (classifier): %s", {k: v for k, v in result.items() if k != "intervals"})
    return result, predictions


def answers(path: str, prompts: list) -> List[str]:
    """The labels a classifier gives prompts (strings, or OpenAI-style message lists), as `compare` and `judge` ask."""
    from .template import encode_prompt
    from .tokenizer import chat_format_of

    model = Classifier(path)
    fmt = chat_format_of(model.tokenizer)
    ids = [encode_prompt(model.tokenizer, fmt, p.strip() if isinstance(p, str) else p) for p in prompts]
    return [label for label, _ in model.predict(ids)]


class ClassifierCompleter:
    """serve.py's completer for a classifier: the same OpenAI routes, request checks and errors (its handler), and
    the answer is the predicted label, one token's worth, with {label, score, scores} in a `classification` field beside
    OpenAI's (the gateway relays it). Sampling settings are accepted and have nothing to change: a label is the argmax, always."""

    def __init__(self, path: str, name: str, max_tokens_limit: int = 4096):
        from .tokenizer import chat_format_of

        self.model, self.name, self.max_tokens_limit = Classifier(path), name, max_tokens_limit
        self.fmt = chat_format_of(self.model.tokenizer)
        self.created = int(time.time())
        self.requests = self.cancelled = 0
        self.batch_sizes: collections.Counter = collections.Counter()
        self.lock = threading.Lock()

    def prepare(self, kind: str, body: dict):
        from .serve import BadRequest, Sampling, request_prompts
        from .template import encode_prompt

        if body.get("model") not in (None, self.name):
            raise BadRequest(404, f"model '{body.get('model')}' does not exist; this server serves '{self.name}'", "model")
        sampling = Sampling.of(body, kind, self.max_tokens_limit)
        if sampling.logprobs is not None:
            raise BadRequest(400, "a classifier has no token log probabilities; its answer's `classification.score` is the label's probability", "logprobs")
        prompts = request_prompts(kind, body)
        ids = [encode_prompt(self.model.tokenizer, self.fmt, p) for p in prompts]
        probs = self.model.probabilities(ids)
        with self.lock:
            self.requests += 1
            self.batch_sizes[1] += 1
        return _LabelJob(kind, ids, sampling, probs, self.model.choices, f"{'cmpl' if kind == 'completion' else 'chatcmpl'}-{uuid.uuid4().hex}", int(time.time()))

    def answer(self, job, alive=lambda: True) -> dict:
        choices = []
        for i, (label, extra) in enumerate(job.labels()):
            if job.kind == "completion":
                choices.append({"index": i, "text": label, "logprobs": None, "finish_reason": "stop", "classification": extra})
            else:
                choices.append({"index": i, "message": {"role": "assistant", "content": label}, "logprobs": None, "finish_reason": "stop", "classification": extra})
        return {"id": job.id, "object": "text_completion" if job.kind == "completion" else "chat.completion", "created": job.created,
                "model": self.name, "choices": choices, "usage": job.usage()}

    def chunks(self, job, alive=lambda: True):
        chat = job.kind == "chat"
        head = {"id": job.id, "object": "chat.completion.chunk" if chat else "text_completion", "created": job.created, "model": self.name}
        extra = {"usage": None} if job.sampling.include_usage else {}
        for i, (label, scores) in enumerate(job.labels()):
            if chat:
                yield {**head, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}], **extra}
                yield {**head, "choices": [{"index": i, "delta": {"content": label}, "logprobs": None, "finish_reason": None, "classification": scores}], **extra}
                yield {**head, "choices": [{"index": i, "delta": {}, "logprobs": None, "finish_reason": "stop"}], **extra}
            else:
                yield {**head, "choices": [{"index": i, "text": label, "logprobs": None, "finish_reason": "stop", "classification": scores}], **extra}
        if job.sampling.include_usage:
            yield {**head, "choices": [], "usage": job.usage()}

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "created": self.created, "owned_by": "tempered"}]}


class _LabelJob:
    """A classified request: each prompt's label `n` times (prompt-major, as OpenAI indexes choices)."""

    def __init__(self, kind, ids, sampling, probs, choices, job_id, created):
        self.kind, self.ids, self.sampling, self.probs, self.choices = kind, ids, sampling, probs, choices
        self.id, self.created = job_id, created

    def labels(self):
        for row in self.probs:
            best = int(row.argmax())
            scores = {"label": self.choices[best], "score": float(row[best]), "scores": {c: float(p) for c, p in zip(self.choices, row)}}
            for _ in range(self.sampling.n):
                yield self.choices[best], scores

    def usage(self) -> dict:
        prompt = sum(len(x) for x in self.ids)
        completion = len(self.ids) * self.sampling.n  # one label per answer
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
