"""sft on a base model directory, LoRA adapters (training, exact resume, export of adapter + merged model), and
the config errors around them."""

import hashlib
import json
import os
import shutil

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from conftest import finished, run_command, sft_config
from tempered_trainer.model_files import ADAPTER_FILES, MODEL_FILES, load_pretrained, weights_digest
from tempered_trainer.tokenizer import load_tokenizer

LORA = {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["c_attn", "c_proj"]}


@pytest.fixture(scope="session")
def base_dir(demo, tmp_path_factory):
    """A tiny GPT-2 saved the way any Hugging Face model is (save_pretrained + tokenizer.json): the vocabulary
    is padded past the tokenizer's and dropout is on, as in real base models."""
    d = tmp_path_factory.mktemp("base") / "gpt2-tiny"
    tok = load_tokenizer(demo["tokenizer"])
    torch.manual_seed(123)
    config = GPT2Config(vocab_size=len(tok) + 6, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(d)
    shutil.copyfile(demo["tokenizer"], d / "tokenizer.json")
    return str(d)


def base_config(demo, base_dir, out, **overrides):
    cfg = sft_config(demo, out)
    del cfg["model"], cfg["tokenizer"]
    return {"base_model": base_dir, **cfg, **overrides}


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_lora_on_base_model_trains_only_the_adapter(demo, base_dir, tmp_path):
    cfg = base_config(demo, base_dir, tmp_path / "out", steps=16, checkpoint_every=8, learning_rate=1e-2, lora=LORA)
    rc, events = run_command("sft", cfg, tmp_path)
    assert rc == 0, events[-1]
    started, done = events[0], finished(events)
    assert 0 < started["trainable_params"] < started["params"] / 5
    assert done["final_loss"] < done["initial_loss"]

    first, last = (torch.load(p, weights_only=False) for p in (done["checkpoints"][0], done["checkpoints"][-1]))
    base, _ = load_pretrained(base_dir, torch.device("cpu"))
    base_state = base.state_dict()
    # the frozen base is stored once per run, not in every checkpoint: a checkpoint names its weights by digest
    assert first["model"] is None and last["model"] is None and last["base_sha256"] == weights_digest(base_dir)
    # trained: every adapter matrix B starts at zero and moved (A is random from the start, and moves too)
    assert last["lora"]["r"] == 4 and set(first["adapter"]) == set(last["adapter"]) and len(last["adapter"]) == 12  # 2 layers x (attn.c_attn, attn.c_proj, mlp.c_proj) x (A, B)
    assert all(not torch.equal(first["adapter"][k], last["adapter"][k]) for k in last["adapter"])
    assert all(float(first["adapter"][k].abs().max()) == 0.0 for k in first["adapter"] if "lora_B" in k)
    assert "optimizer" in last and len(last["optimizer"]["state"]) == len(last["adapter"])

    # the two deliverables: the adapter (PEFT format) and the merged model, which equals base + adapter
    assert sorted(os.listdir(done["adapter_dir"])) == sorted(ADAPTER_FILES)
    assert sorted(os.listdir(done["model_dir"])) == sorted(MODEL_FILES)
    from peft import PeftModel

    x = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        base_logits = base(input_ids=x).logits
        with_adapter = PeftModel.from_pretrained(base, done["adapter_dir"]).eval()  # wraps `base` in place
        merged, tok = load_pretrained(done["model_tar"], torch.device("cpu"))
        assert torch.allclose(merged(input_ids=x).logits, with_adapter(input_ids=x).logits, atol=1e-5)
        assert not torch.allclose(merged(input_ids=x).logits, base_logits, atol=1e-3)
    assert tok.get_vocab() == load_tokenizer(demo["tokenizer"]).get_vocab()

    # export of the last checkpoint needs the base again but no tokenizer (the checkpoint carries it), and gives
    # the same bytes; without the base, or with another one, it is a clear bad-input error
    rc, events = run_command("export", {"checkpoint": done["checkpoints"][-1], "output_dir": str(tmp_path / "x")}, tmp_path)
    assert rc == 2 and "'base_model' is required" in events[-1]["reason"]
    rc, events = run_command("export", {"checkpoint": done["checkpoints"][-1], "output_dir": str(tmp_path / "export"), "base_model": base_dir}, tmp_path)
    assert rc == 0, events[-1]
    exported = finished(events)
    assert sha256(exported["adapter_tar"]) == sha256(done["adapter_tar"])
    assert sha256(exported["model_tar"]) == sha256(done["model_tar"])
    rc, events = run_command("eval", {"checkpoint": done["checkpoints"][-1], "shard": demo["heldout_shard"], "device": "cpu",
                                      "base_model": base_dir, "output_dir": str(tmp_path / "eval")}, tmp_path)
    assert rc == 0 and finished(events)["loss"] < events[1]["loss"] * 1.0001


def test_lora_resume_on_a_base_model_is_exact(demo, base_dir, tmp_path):
    # The checkpoints hold no base weights, so the resumed attempt is given the base again and must match.
    cfg = base_config(demo, base_dir, tmp_path / "a", steps=8, checkpoint_every=4, learning_rate=1e-2, lora=LORA,
                      gradient_accumulation=2)
    rc, straight = run_command("sft", cfg, tmp_path)
    assert rc == 0, straight[-1]
    half = os.path.join(tmp_path, "a", "checkpoints", "step-00000004.pt")
    rc, resumed = run_command("sft", {**cfg, "output_dir": str(tmp_path / "b"), "resume_from": half}, tmp_path)
    assert rc == 0, resumed[-1]
    losses = lambda evs: {e["step"]: e["loss"] for e in evs if e["event"] == "step"}  # noqa: E731
    assert all(losses(resumed)[s] == losses(straight)[s] for s in range(5, 9))
    assert sha256(finished(straight)["adapter_tar"]) == sha256(finished(resumed)["adapter_tar"])
    # another base than the checkpoint's is refused
    other = tmp_path / "other-base"
    shutil.copytree(base_dir, other)
    model = GPT2LMHeadModel.from_pretrained(other)
    with torch.no_grad():
        model.transformer.wte.weight[0, 0] += 1
    model.save_pretrained(other)
    rc, events = run_command("sft", {**cfg, "base_model": str(other), "output_dir": str(tmp_path / "c"), "resume_from": half}, tmp_path)
    assert rc == 2 and "base" in events[-1]["reason"], events[-1]


def test_full_finetune_of_base_model(demo, base_dir, tmp_path):
    rc, events = run_command("sft", base_config(demo, base_dir, tmp_path / "out", steps=8, checkpoint_every=8, tokenizer=demo["tokenizer"]), tmp_path)
    assert rc == 0, events[-1]
    done = finished(events)
    assert done["final_loss"] < done["initial_loss"] and "adapter_tar" not in done
    ckpt = torch.load(done["checkpoints"][-1], weights_only=False)
    assert ckpt["model_args"]["config"]["vocab_size"] == len(load_tokenizer(demo["tokenizer"])) + 6 and ckpt["adapter"] is None


def test_lora_resume_is_exact(demo, tmp_path):
    # LoRA with dropout on a from-scratch model: 12 steps straight vs 6, then resume_from the step-6 checkpoint.
    straight_cfg = sft_config(demo, tmp_path / "a", steps=12, checkpoint_every=6, warmup_steps=2, lora=LORA)
    rc, straight = run_command("sft", straight_cfg, tmp_path)
    assert rc == 0, straight[-1]
    half = os.path.join(tmp_path, "a", "checkpoints", "step-00000006.pt")
    rc, resumed = run_command("sft", {**straight_cfg, "output_dir": str(tmp_path / "b"), "resume_from": half}, tmp_path)
    assert rc == 0, resumed[-1]
    losses = lambda evs: {e["step"]: e["loss"] for e in evs if e["event"] == "step"}  # noqa: E731
    assert list(losses(resumed)) == list(range(7, 13)) and all(losses(resumed)[s] == losses(straight)[s] for s in range(7, 13))
    a = torch.load(finished(straight)["checkpoints"][-1], weights_only=False)
    b = torch.load(finished(resumed)["checkpoints"][-1], weights_only=False)
    assert all(torch.equal(a["adapter"][k], b["adapter"][k]) for k in a["adapter"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    assert sha256(finished(straight)["adapter_tar"]) == sha256(finished(resumed)["adapter_tar"])
    # a different lora than the checkpoint's is refused
    rc, events = run_command("sft", {**straight_cfg, "output_dir": str(tmp_path / "c"), "resume_from": half, "lora": {**LORA, "r": 8}}, tmp_path)
    assert rc == 2 and "lora" in events[-1]["reason"]


def test_base_model_and_lora_config_errors(demo, base_dir, tmp_path):
    spec = json.load(open(demo["tokenizer"]))
    vocab = spec["model"]["vocab"]
    vocab["zz-new"] = vocab.pop(next(t for t in vocab if vocab[t] == 100))  # same size, one token different
    other_tok = tmp_path / "tok.json"
    other_tok.write_text(json.dumps(spec))
    cases = [
        (base_config(demo, base_dir, tmp_path, tokenizer=str(other_tok)), "'tokenizer'"),
        ({**base_config(demo, base_dir, tmp_path), "model": dict(sft_config(demo, tmp_path)["model"])}, "'base_model'"),
        (base_config(demo, base_dir, tmp_path, lora={"r": 0}), "lora.r"),
        (base_config(demo, base_dir, tmp_path, lora={"r": 2, "rank": 3}), "lora.rank"),
        (base_config(demo, base_dir, tmp_path, lora={"r": 2, "target_modules": ["q_proj"]}), "lora.target_modules"),
        (base_config(demo, base_dir + "-missing", tmp_path), "missing"),
        ({k: v for k, v in sft_config(demo, tmp_path).items() if k != "tokenizer"}, "'tokenizer'"),
    ]
    for cfg, needle in cases:
        rc, events = run_command("sft", cfg, tmp_path)
        assert rc == 2 and events[-1]["retryable"] is False and needle in events[-1]["reason"], (needle, events[-1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_gpu_is_a_clear_non_retryable_error(demo, tmp_path):
    rc, events = run_command("sft", sft_config(demo, tmp_path, device="cuda"), tmp_path)
    assert rc == 2 and events[-1]["event"] == "error" and events[-1]["retryable"] is False
    assert "cuda" in events[-1]["reason"] and "no CUDA device" in events[-1]["reason"]
