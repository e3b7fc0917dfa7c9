"""`eval` of a GGUF file (a target path ending `.gguf`): the same figures as a PyTorch model's, from llama.cpp.

The optimize stage scores each quantized export on the held-out split and the suites this way, so a figure of a
GGUF file and of the model it came from differ by what the quantization changed, nothing else: the prompts are the
shard's own token ids (the gguf command checks that llama.cpp tokenizes as the model does), answers are greedy and
end at the shard's end token, and the answers are decoded, scored and given intervals by eval.py's own code. The
loss is the response-token cross entropy of the logits llama.cpp computes for every position of a record.
"""

import math
import os
from typing import Optional

import numpy as np

from .events import ConfigError, Progress, log


def _decoding_tokenizer(path: Optional[str]):
    """The tokenizer that decodes answers: a tokenizer.json, or a model directory / model.tar holding one."""
    from .model_files import unpacked_model
    from .tokenizer import load_tokenizer, read_tokenizer_json, tokenizer_from_json

    if not path:
        raise ConfigError("eval config: field 'tokenizer' is required with a .gguf target (the vocabulary that decodes its answers)")
    if path.endswith(".json"):
        return tokenizer_from_json(read_tokenizer_json(path), path)
    with unpacked_model(path) as model_dir:
        return load_tokenizer(model_dir)


def _trained_context(path: str) -> int:
    """The context the model was trained with, from the file's metadata (`<architecture>.context_length`)."""
    from gguf import GGUFReader

    fields = GGUFReader(path).fields
    arch = bytes(fields["general.architecture"].parts[-1]).decode("utf-8")
    return int(fields[f"{arch}.context_length"].parts[-1][0])


def _load(path: str, n_ctx: int, logits_all: bool, threads: Optional[int]):
    import llama_cpp

    from .gguf import stdout_fd_to_stderr

    with stdout_fd_to_stderr():
        return llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=min(n_ctx, 512), n_threads=threads,
                               logits_all=logits_all, verbose=False, seed=0)


def _record_loss(llm, tokens: np.ndarray, mask: np.ndarray) -> tuple:
    """(summed loss, count) over a record's positions whose target is a response token, as sft.response_loss."""
    targets = np.flatnonzero(mask[1:] == 1)  # position t predicts token t + 1
    if len(targets) == 0:
        return 0.0, 0
    llm.reset()
    llm.eval(tokens.tolist())
    logits = np.asarray(llm.scores[: len(tokens) - 1], dtype=np.float64)[targets]
    top = logits.max(axis=1, keepdims=True)
    log_z = (top[:, 0] + np.log(np.exp(logits - top).sum(axis=1)))
    return float((log_z - logits[np.arange(len(targets)), tokens[targets + 1]]).sum()), len(targets)


def _answers(llm, prompts, max_new_tokens: int, eos_id: int, n_ctx: int, progress: Progress) -> list:
    """Greedy new token ids of each prompt (without the end token), one prompt at a time."""
    out = []
    for prompt in prompts:
        p = list(prompt)[-(n_ctx - 1):]
        steps = min(max_new_tokens, n_ctx - len(p))
        new = []
        for tok in llm.generate(p, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if tok == eos_id:
                break
            new.append(int(tok))
            if len(new) >= steps:
                break
        out.append(new)
        progress.advance()
    return out


def evaluate(cfg, path: str, shard, with_loss: bool) -> tuple:
    """(figures, predictions or None) of a GGUF file on the shard, in eval.evaluate_one's shape."""
    tokenizer = _decoding_tokenizer(cfg.tokenizer)
    if not os.path.isfile(path):
        raise ConfigError(f"eval config: GGUF file {path} not found")
    # As eval.py with a PyTorch model: records cut to the model's context (and max_seq_length). The context
    # llama.cpp allocates is what the longest record and its answer need, since logits of every position cost
    # context × vocabulary floats; a prompt and its answer then fit it exactly as they fit the model's whole context.
    trained = _trained_context(path)
    longest = max(len(shard.record(i)[0]) for i in range(len(shard)))
    seq_len = min(longest, cfg.max_seq_length or longest, trained)
    n_ctx = min(trained, longest + cfg.max_new_tokens + 1)
    threads = int(os.environ["TEMPERED_NUM_THREADS"]) if os.environ.get("TEMPERED_NUM_THREADS") else None
    # Logits of every position only when the loss is wanted: they cost n_ctx × vocabulary floats.
    llm = _load(path, n_ctx, with_loss, threads)
    try:
        return _score(cfg, path, shard, with_loss, llm, tokenizer, seq_len, n_ctx)
    finally:
        llm.close()  # now, not at interpreter exit, where llama-cpp-python's finalizer can fail


def _score(cfg, path: str, shard, with_loss: bool, llm, tokenizer, seq_len: int, n_ctx: int) -> tuple:
    from .eval import score_generation

    if int(shard.tokens.max(initial=0)) >= llm.n_vocab():
        raise ConfigError(f"eval: shard {cfg.shard} has token ids beyond the GGUF's vocabulary ({llm.n_vocab()})")
    loss = None
    if with_loss:
        total, count, progress = 0.0, 0, Progress("loss", len(shard))
        for i in range(len(shard)):
            tokens, mask = shard.record(i)
            t, c = _record_loss(llm, tokens[:seq_len].astype(np.int64), mask[:seq_len])
            total, count = total + t, count + c
            progress.advance()
        if count == 0:
            raise ConfigError("eval: the shard has no response tokens within the model's context length")
        loss = total / count
    result = {"checkpoint": path, "step": None, "loss": loss, "examples": len(shard), "bytes": os.path.getsize(path),
              "perplexity": None if loss is None else math.exp(loss) if loss < 700 else float("inf")}
    predictions = None
    if cfg.generate:
        answer = lambda prompts, progress: _answers(llm, prompts, cfg.max_new_tokens, shard.eos_id, n_ctx, progress)  # noqa: E731
        figures, predictions = score_generation(answer, tokenizer, shard, cfg.choices, cfg.text_metrics or ())
        result.update(figures)
    log.info("eval (gguf): %s", {k: v for k, v in result.items() if k != "intervals"})
    return result, predictions
