"""gguf: models -> GGUF files (llama.cpp's converter and quantizer), loaded back with llama.cpp: the demo GPT-2, a
LoRA adapter merged into its base, SmolLM2-135M-Instruct from the catalog, and the errors."""

import hashlib
import os

import llama_cpp
import numpy as np
import pytest
import torch
from gguf import GGUFReader

from conftest import finished, run_command, sft_config
from tempered_trainer.judge import answers_of
from tempered_trainer.model_files import load_pretrained

LORA = {"r": 4, "alpha": 8, "target_modules": ["c_attn", "c_proj"]}


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def gguf_run(tmp_path, **cfg):
    os.makedirs(tmp_path, exist_ok=True)
    rc, events = run_command("gguf", {"output_dir": str(tmp_path / "out"), "threads": 2, **cfg}, tmp_path)
    assert rc == 0, events[-1]
    return events, finished(events)


def llama_answer(path, prompt, max_tokens=16):
    llm = llama_cpp.Llama(model_path=path, n_ctx=0, n_threads=2, verbose=False, chat_format="chat_template.default")
    out = llm.create_chat_completion(messages=[{"role": "user", "content": prompt}], temperature=0.0, max_tokens=max_tokens)
    return out["choices"][0]["message"]["content"]


@pytest.fixture(scope="session")
def demo_gguf(exported, tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf-demo")
    events, done = gguf_run(d, model=exported["model_tar"], check_prompt="reverse 1 2 3")
    return {"events": events, "finished": done}


def test_demo_model_converts_and_answers_like_torch(demo, exported, demo_gguf):
    done = demo_gguf["finished"]
    assert done["architecture"] == "GPT2LMHeadModel" and done["chat_template"] is False
    files = {f["type"]: f for f in done["files"]}
    assert list(files) == ["f16", "q8_0", "q4_k_m"]
    for f in files.values():
        assert os.path.isfile(f["path"]) and os.path.getsize(f["path"]) == f["bytes"] and sha256(f["path"]) == f["sha256"]
        assert isinstance(f["check"]["answer"], str) and f["check"]["completion_tokens"] >= 1
    assert files["q8_0"]["bytes"] < files["f16"]["bytes"]
    phases = [e["phase"] for e in demo_gguf["events"] if e["event"] == "step"]
    assert phases == ["convert", "quantize q8_0", "quantize q4_k_m", "check"]
    # The f16 file is the same model: llama.cpp's greedy answers through the GGUF's (plain) template are torch's.
    model, tokenizer = load_pretrained(exported["model_tar"], torch.device("cpu"))
    prompts = [r["prompt"] for r in demo["heldout"][:10]]
    expected = answers_of(model, tokenizer, prompts, 16, 16)
    same = sum(llama_answer(files["f16"]["path"], p).strip() == e for p, e in zip(prompts, expected))
    assert same >= 8, f"only {same} of {len(prompts)} greedy answers agree"
    # and what the model was trained on: the plain template, no BOS
    reader = GGUFReader(files["f16"]["path"])
    assert bytes(reader.fields["tokenizer.ggml.add_bos_token"].parts[-1]) == b"\x00"


def test_lora_adapter_is_merged_into_its_base(demo, exported, tmp_path):
    rc, events = run_command("sft", {**sft_config(demo, tmp_path / "sft", steps=6, checkpoint_every=6, learning_rate=1e-2, lora=LORA),
                                     "base_model": exported["model_tar"], "model": None, "tokenizer": None}, tmp_path)
    assert rc == 0, events[-1]
    lora = finished(events)
    events, from_adapter = gguf_run(tmp_path / "a", adapter=lora["adapter_tar"], base_model=exported["model_tar"], types=["f16"])
    _, from_merged = gguf_run(tmp_path / "m", model=lora["model_tar"], types=["f16"])
    assert [e["phase"] for e in events if e["event"] == "step"] == ["merge", "convert", "check"]
    a, m = GGUFReader(from_adapter["files"][0]["path"]), GGUFReader(from_merged["files"][0]["path"])
    assert [t.name for t in a.tensors] == [t.name for t in m.tensors]
    assert all(np.array_equal(x.data, y.data) for x, y in zip(a.tensors, m.tensors))
    # ...and the adapter changed the weights: the base's own GGUF differs
    _, plain = gguf_run(tmp_path / "b", model=exported["model_tar"], types=["f16"])
    b = GGUFReader(plain["files"][0]["path"])
    assert not all(np.array_equal(x.data, y.data) for x, y in zip(a.tensors, b.tensors))


def test_smollm2_sizes_and_answers(smollm2_dir, tmp_path):
    model_tar = os.path.join(smollm2_dir, "model.tar")
    assert os.path.isfile(model_tar), f"{model_tar} is missing: run infra/bootstrap.sh"
    _, done = gguf_run(tmp_path, model=model_tar, check_prompt="What is the capital of France?")
    assert done["architecture"] == "LlamaForCausalLM" and done["chat_template"] is True
    files = {f["type"]: f for f in done["files"]}
    assert files["q4_k_m"]["bytes"] < files["q8_0"]["bytes"] < files["f16"]["bytes"]
    assert files["f16"]["bytes"] > 2 * 134_000_000  # two bytes per weight
    for kind in ("f16", "q8_0"):
        assert "Paris" in files[kind]["check"]["answer"], files[kind]["check"]
    assert files["q4_k_m"]["check"]["answer"].strip()


def test_config_errors(exported, tmp_path):
    cases = [
        ({"output_dir": str(tmp_path / "o")}, "'model'"),
        ({"output_dir": str(tmp_path / "o"), "model": exported["model_tar"], "types": ["q5_1"]}, "types[0]"),
        ({"output_dir": str(tmp_path / "o"), "adapter": exported["model_tar"]}, "'base_model'"),
        ({"output_dir": str(tmp_path / "o"), "model": exported["model_tar"], "converter": str(tmp_path / "none.py")}, "'converter'"),
    ]
    for cfg, field in cases:
        rc, events = run_command("gguf", cfg, tmp_path)
        assert rc == 2 and field in events[-1]["reason"], events[-1]


def test_a_model_llamacpp_cannot_convert_is_bad_input(demo, exported, tmp_path):
    # A reward model (GPT-2 with a score head): llama.cpp's converter has no class for it.
    rc, events = run_command("reward", {"preferences": demo["preferences"], "output_dir": str(tmp_path / "rm"), "base_model": exported["model_tar"],
                                        "steps": 2, "batch_size": 8, "learning_rate": 1e-3, "seed": 0, "device": "cpu"}, tmp_path)
    assert rc == 0, events[-1]
    rc, events = run_command("gguf", {"output_dir": str(tmp_path / "o"), "model": finished(events)["model_tar"]}, tmp_path)
    assert rc == 2 and "'model'" in events[-1]["reason"] and "GPT2ForSequenceClassification is not supported" in events[-1]["reason"], events[-1]
    assert not os.listdir(tmp_path / "o"), "nothing is left behind"


def test_eval_scores_gguf_files_like_the_model_they_came_from(demo, exported, demo_gguf, tmp_path):
    """eval of the .gguf files (llama.cpp) beside the PyTorch model on the same held-out shard: the f16 file's loss
    and answers are the model's, up to f16 rounding; every file reports its size and throughput."""
    files = {f["type"]: f["path"] for f in demo_gguf["finished"]["files"]}
    common = {"shard": demo["heldout_shard"], "generate": True, "max_new_tokens": 16, "device": "cpu", "text_metrics": ["chrf"]}
    rc, events = run_command("eval", {**common, "model": exported["model_tar"], "output_dir": str(tmp_path / "torch")}, tmp_path)
    assert rc == 0, events[-1]
    torch_result = finished(events)["results"][0]
    rc, events = run_command("eval", {**common, "checkpoints": [files["f16"], files["q4_k_m"]], "tokenizer": exported["model_tar"],
                                      "output_dir": str(tmp_path / "gguf")}, tmp_path)
    assert rc == 0, events[-1]
    f16, q4 = finished(events)["results"]
    assert f16["examples"] == q4["examples"] == torch_result["examples"]
    assert f16["generated"] == torch_result["generated"] > 0
    assert abs(f16["loss"] / torch_result["loss"] - 1) < 0.01, (f16["loss"], torch_result["loss"])
    assert abs(f16["exact_match"] - torch_result["exact_match"]) <= 0.05, (f16["exact_match"], torch_result["exact_match"])
    assert set(f16["intervals"]) == {"exact_match", "chrf"} and f16["intervals"]["exact_match"]["n"] == f16["generated"]
    assert f16["bytes"] == os.path.getsize(files["f16"]) > q4["bytes"] == os.path.getsize(files["q4_k_m"])
    assert f16["tokens_per_sec"] > 0 and f16["new_tokens"] > 0
    # A quantized file is another model: its loss moves, by a little.
    assert q4["loss"] != f16["loss"] and abs(q4["loss"] / f16["loss"] - 1) < 0.5


def test_eval_of_a_gguf_file_needs_the_tokenizer_that_decodes_it(demo, demo_gguf, tmp_path):
    path = demo_gguf["finished"]["files"][0]["path"]
    rc, events = run_command("eval", {"shard": demo["heldout_shard"], "model": path, "generate": True, "output_dir": str(tmp_path / "o")}, tmp_path)
    assert rc == 2 and events[-1]["event"] == "error" and "field 'tokenizer' is required with a .gguf target" in events[-1]["reason"], events[-1]
