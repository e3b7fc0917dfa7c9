"""Record formats through the chat format: each record shape gives exactly the expected tokens and loss mask, with
the real SmolLM2 tokenizer and ChatML template and with the plain template of a tokenizer trained here; the loss
falls on the assistant text and end token alone (decoded and compared), multi-turn included."""

import json
import os

import numpy as np
import pytest

from conftest import finished, run_command
from tempered_trainer.eval import extract_label, label_scores, last_answer
from tempered_trainer.tokenizer import load_tokenizer
from tempered_trainer.shard import read_shard
from tempered_trainer.template import PLAIN, encode_segments, prompt_text, read_chat_format, record_segments

SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"

TURN = {"key": "t", "prompt": "What is 2+2?", "response": "4"}
CHAT = {"key": "c", "messages": [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris"},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome"},
]}
TEXT = {"key": "x", "text": "Plain text for continued pretraining."}


@pytest.fixture(scope="module")
def smollm2(smollm2_dir) -> str:
    model = os.path.join(smollm2_dir, "model")
    assert os.path.isdir(model), f"{model} is missing: run infra/bootstrap.sh, which converts the base model"
    return model


def loss_text(tok, ids, mask) -> str:
    return tok.decode([t for t, m in zip(ids, mask) if m])


def test_chatml_turn_record(smollm2):
    tok, fmt = load_tokenizer(smollm2), read_chat_format(smollm2)
    assert fmt.end == "<|im_end|>" and fmt.template
    ids, mask = encode_segments(tok, record_segments(fmt, TURN))
    # The whole text is the template's rendering, the model's default system prompt included; loss only on "4<|im_end|>".
    assert tok.decode(ids) == SYSTEM + "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
    assert loss_text(tok, ids, mask) == "4<|im_end|>"
    assert mask == [0] * (len(ids) - 3) + [1, 1, 0]  # "4", <|im_end|>, then the template's "\n" without loss
    assert ids[-2] == tok.convert_tokens_to_ids("<|im_end|>") == tok.eos_token_id


def test_chatml_multi_turn_record(smollm2):
    tok, fmt = load_tokenizer(smollm2), read_chat_format(smollm2)
    ids, mask = encode_segments(tok, record_segments(fmt, CHAT))
    assert tok.decode(ids) == ("<|im_start|>system\nAnswer in one word.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n"
                               "<|im_start|>assistant\nParis<|im_end|>\n<|im_start|>user\nAnd of Italy?<|im_end|>\n"
                               "<|im_start|>assistant\nRome<|im_end|>\n")
    assert loss_text(tok, ids, mask) == "Paris<|im_end|>Rome<|im_end|>"
    # Exactly two runs of loss, one per assistant turn.
    runs = int(np.sum(np.diff(np.array([0] + mask)) == 1))
    assert runs == 2
    # Evaluation asks the last question with everything before it, and expects the last answer.
    prompt, answer = last_answer(np.array(ids), np.array(mask))
    assert tok.decode(prompt) == prompt_text(fmt, CHAT["messages"][:-1]) and tok.decode(answer) == "Rome<|im_end|>"


def test_chatml_text_record_is_all_loss(smollm2):
    tok, fmt = load_tokenizer(smollm2), read_chat_format(smollm2)
    ids, mask = encode_segments(tok, record_segments(fmt, TEXT))
    assert tok.decode(ids) == TEXT["text"] + "<|im_end|>" and all(mask)
    assert last_answer(np.array(ids), np.array(mask)) is None  # nothing to answer: not generated in eval


def test_plain_template_keeps_the_tiny_models_layout(demo):
    tok = load_tokenizer(demo["tokenizer"])
    ids, mask = encode_segments(tok, record_segments(PLAIN, TURN))
    # prompt + "\n" without loss, then response + <|endoftext|> with loss: the layout every tiny model had.
    expected = tok.encode("What is 2+2?\n", add_special_tokens=False)
    assert ids[: len(expected)] == expected and mask[: len(expected)] == [0] * len(expected)
    assert loss_text(tok, ids, mask) == "4<|endoftext|>" and ids[-1] == tok.eos_token_id
    ids, mask = encode_segments(tok, record_segments(PLAIN, CHAT))
    assert tok.decode(ids) == "Answer in one word.\nCapital of France?\nParis<|endoftext|>And of Italy?\nRome<|endoftext|>"
    assert loss_text(tok, ids, mask) == "Paris<|endoftext|>Rome<|endoftext|>"


def test_tokenize_command_renders_every_shape_with_the_base_template(smollm2, tmp_path):
    records = [TURN, CHAT, TEXT]
    path = tmp_path / "cleaned.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    rc, events = run_command("tokenize", {"input": str(path), "tokenizer": smollm2, "output_dir": str(tmp_path / "out")}, tmp_path)
    assert rc == 0, events[-1]
    assert finished(events)["records"] == 3
    shard = read_shard(str(tmp_path / "out" / "encoded.shard"))
    tok, fmt = load_tokenizer(smollm2), read_chat_format(smollm2)
    assert shard.keys == ["t", "c", "x"] and shard.eos_id == tok.convert_tokens_to_ids("<|im_end|>")
    for i, r in enumerate(records):
        ids, mask = shard.record(i)
        assert (ids.tolist(), mask.tolist()) == encode_segments(tok, record_segments(fmt, r))
    # A record that fits no shape is a clear error naming its line.
    path.write_text(json.dumps({"key": "bad", "messages": [{"role": "user", "content": "q"}]}) + "\n")
    rc, events = run_command("tokenize", {"input": str(path), "tokenizer": smollm2, "output_dir": str(tmp_path / "o2")}, tmp_path)
    assert rc == 2 and "line 1" in events[-1]["reason"] and "assistant" in events[-1]["reason"]


def test_label_extraction_and_scores():
    choices = ["positive", "negative"]
    assert extract_label("Negative.", choices) == "negative"
    assert extract_label("It is positive, not negative", choices) == "positive"  # the earliest named
    assert extract_label("unsure", choices) is None
    scores = label_scores([("positive", "positive"), ("negative", "positive"), (None, "negative"), ("negative", "negative")], choices)
    assert scores["accuracy"] == 0.5 and scores["no_label"] == 1
    # F1 positive: tp 1, fp 0, fn 1 -> 2/3; negative: tp 1, fp 1, fn 1 -> 1/2
    assert abs(scores["macro_f1"] - (2 / 3 + 1 / 2) / 2) < 1e-12


def test_eval_keeps_a_models_chat_format_when_given_a_bare_tokenizer(smollm2, tmp_path):
    # The pipeline hands eval the tokenize stage's tokenizer.json, which carries no chat format: generation must
    # still stop at the model's own end token, not run past it into a next turn.
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"key": "q", "prompt": "What is the capital of France?", "response": "The capital of France is Paris."}) + "\n")
    rc, events = run_command("tokenize", {"input": str(path), "tokenizer": smollm2, "output_dir": str(tmp_path / "tok")}, tmp_path)
    assert rc == 0, events[-1]
    rc, events = run_command("eval", {"model": smollm2, "tokenizer": str(tmp_path / "tok" / "tokenizer.json"), "shard": str(tmp_path / "tok" / "encoded.shard"),
                                      "generate": True, "max_new_tokens": 24, "device": "cpu", "output_dir": str(tmp_path / "ev")}, tmp_path)
    assert rc == 0, events[-1]
    assert finished(events)["exact_match"] == 1.0
    prediction = json.load(open(tmp_path / "ev" / "eval.json"))["results"][0]["predictions"][0]["prediction"]
    assert prediction == "The capital of France is Paris."


def test_progress_events_are_throttled(capsys):
    # Long scoring emits `progress` so the activity's watchdog (silence = hung) does not kill a working trainer.
    from tempered_trainer.events import Progress

    quiet, chatty = Progress("generate", 3, every=3600), Progress("loss", 3, every=0)
    for p in (quiet, chatty):
        for _ in range(3):
            p.advance()
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["event"], e["what"], e["done"], e["total"]) for e in events] == [("progress", "loss", n, 3) for n in (1, 2, 3)]
