from tokenizers import Tokenizer

from conftest import run_command
from tempered_trainer.tokenizer import load_tokenizer
from tempered_trainer.shard import read_shard


def test_tokenizer_trains_encodes_and_loads_back(demo):
    shard = read_shard(demo["encoded"])
    assert len(shard) == len(demo["records"]) and shard.keys[0] == demo["records"][0]["key"]
    tok = Tokenizer.from_file(demo["tokenizer"])
    assert tok.token_to_id("<|endoftext|>") == 0 and tok.token_to_id("<|pad|>") == 1
    assert shard.eos_id == 0 and shard.vocab_size == tok.get_vocab_size() <= 512
    for i in (0, 7, len(shard) - 1):
        rec = demo["records"][i]
        tokens, mask = shard.record(i)
        n_prompt = int((mask == 0).sum())
        assert mask[:n_prompt].sum() == 0 and mask[n_prompt:].min() == 1  # prompt first, then response
        assert tokens[-1] == shard.eos_id
        assert tok.decode(tokens[:n_prompt].tolist()) == rec["prompt"] + "\n"
        assert tok.decode(tokens[n_prompt:-1].tolist()) == rec["response"]
    hf = load_tokenizer(demo["tokenizer"])
    assert hf.eos_token == "<|endoftext|>" and hf.pad_token_id == hf.eos_token_id == 0
    assert hf.encode("reverse 1 2 3\n", add_special_tokens=False) == tok.encode("reverse 1 2 3\n", add_special_tokens=False).ids


def test_bad_config_is_non_retryable(tmp_path, demo):
    rc, events = run_command("tokenize", {"input": str(demo["dir"] / "records.jsonl"), "vocab_size": 100, "min_frequency": 2, "output_dir": str(tmp_path)}, tmp_path)
    assert rc == 2 and events[-1]["event"] == "error" and events[-1]["retryable"] is False and "vocab_size" in events[-1]["reason"]
    rc, events = run_command("tokenize", {"input": "x", "vocab_size": 512, "min_frequency": 2, "output_dir": str(tmp_path), "extra": 1}, tmp_path)
    assert rc == 2 and "'extra'" in events[-1]["reason"]
    rc, events = run_command("tokenize", {"input": str(tmp_path / "missing.jsonl"), "vocab_size": 512, "min_frequency": 2, "output_dir": str(tmp_path)}, tmp_path)
    assert rc == 2 and events[-1]["event"] == "error"


def test_a_base_models_tokenizer_encodes_instead_of_a_trained_one(tmp_path, demo, exported):
    """Fine-tuning a base model: its own tokenizer, taken from the model.tar, encodes the records the same way."""
    rc, events = run_command("tokenize", {"input": str(demo["dir"] / "records.jsonl"), "tokenizer": exported["model_tar"], "output_dir": str(tmp_path / "out")}, tmp_path)
    assert rc == 0, events[-1]
    assert open(tmp_path / "out" / "encoded.shard", "rb").read() == open(demo["encoded"], "rb").read()
    rc, events = run_command("tokenize", {"input": str(demo["dir"] / "records.jsonl"), "tokenizer": str(tmp_path / "none.json"), "output_dir": str(tmp_path / "o2")}, tmp_path)
    assert rc == 2 and "tokenizer" in events[-1]["reason"]


def test_encode_false_trains_the_same_tokenizer_and_its_shards_encode_as_the_whole(tmp_path, demo):
    """A tokenize stage on shards: the tokenizer alone (encode false) is the one the whole run writes, and the
    records encoded in three parts with it, concatenated, are the whole run's records token for token."""
    records = str(demo["dir"] / "records.jsonl")
    rc, events = run_command("tokenize", {"input": records, "vocab_size": 512, "min_frequency": 2, "output_dir": str(tmp_path / "tok"), "encode": False}, tmp_path)
    assert rc == 0 and events[-1]["tokens"] == 0 and not (tmp_path / "tok" / "encoded.shard").exists()
    assert open(tmp_path / "tok" / "tokenizer.json", "rb").read() == open(demo["tokenizer"], "rb").read()
    lines = open(records).read().splitlines(keepends=True)
    whole = read_shard(demo["encoded"])
    at = 0
    for i, part in enumerate([lines[:7], lines[7:100], lines[100:]]):
        (tmp_path / f"part{i}.jsonl").write_text("".join(part))
        rc, events = run_command("tokenize", {"input": str(tmp_path / f"part{i}.jsonl"), "tokenizer": str(tmp_path / "tok" / "tokenizer.json"), "output_dir": str(tmp_path / f"out{i}")}, tmp_path)
        assert rc == 0, events[-1]
        shard = read_shard(str(tmp_path / f"out{i}" / "encoded.shard"))
        assert shard.vocab_size == whole.vocab_size and shard.eos_id == whole.eos_id
        for j in range(len(shard)):
            assert shard.keys[j] == whole.keys[at + j]
            assert [x.tolist() for x in shard.record(j)] == [x.tolist() for x in whole.record(at + j)]
        at += len(shard)
    assert at == len(whole)


def test_a_vocabulary_input_trains_the_tokenizer_and_every_input_record_is_encoded(tmp_path, demo):
    """A large corpus' vocabulary sample: the tokenizer is the one trained on the sample alone, and it encodes
    every record of the input, including words the sample never had (as bytes, never lost)."""
    records = str(demo["dir"] / "records.jsonl")
    lines = open(records).read().splitlines(keepends=True)
    (tmp_path / "sample.jsonl").write_text("".join(lines[:40]))
    base = {"vocab_size": 512, "min_frequency": 2}
    rc, events = run_command("tokenize", {**base, "input": str(tmp_path / "sample.jsonl"), "output_dir": str(tmp_path / "alone"), "encode": False}, tmp_path)
    assert rc == 0, events[-1]
    rc, events = run_command("tokenize", {**base, "input": records, "vocabulary_input": str(tmp_path / "sample.jsonl"), "output_dir": str(tmp_path / "out")}, tmp_path)
    assert rc == 0, events[-1]
    trained = open(tmp_path / "out" / "tokenizer.json", "rb").read()
    assert trained == open(tmp_path / "alone" / "tokenizer.json", "rb").read()
    assert trained != open(demo["tokenizer"], "rb").read()  # forty records count fewer pairs than all of them
    shard = read_shard(str(tmp_path / "out" / "encoded.shard"))
    assert len(shard) == len(lines) == events[-1]["records"]
    tok = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    last = demo["records"][-1]
    tokens, mask = shard.record(len(shard) - 1)
    assert tok.decode(tokens[: int((mask == 0).sum())].tolist()) == last["prompt"] + "\n"
