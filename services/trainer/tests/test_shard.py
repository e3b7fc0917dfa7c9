import numpy as np
import pytest

from tempered_trainer.events import ConfigError
from tempered_trainer.shard import from_records, read_shard, write_shard


def test_round_trip(tmp_path):
    tokens = [[5, 6, 7], [], [1, 2, 300000]]
    masks = [[0, 1, 1], [], [0, 0, 1]]
    shard = from_records(["a", "ключ-β", "c"], tokens, masks, vocab_size=300001, eos_id=0)
    path = str(tmp_path / "x.shard")
    write_shard(path, shard)
    back = read_shard(path)
    assert back.keys == ["a", "ключ-β", "c"]
    assert back.offsets.tolist() == [0, 3, 3, 6]
    assert back.vocab_size == 300001 and back.eos_id == 0
    for i in range(3):
        t, m = back.record(i)
        assert t.tolist() == tokens[i] and m.tolist() == masks[i]
    # byte layout: magic, LE header length, header, int32 tokens, uint8 mask
    raw = open(path, "rb").read()
    assert raw[:8] == b"TMPSHRD1"
    hlen = int.from_bytes(raw[8:12], "little")
    body = raw[12 + hlen :]
    assert np.frombuffer(body[:24], "<i4").tolist() == [5, 6, 7, 1, 2, 300000]
    assert list(body[24:]) == [0, 1, 1, 0, 0, 1]


def test_select_and_corruption(tmp_path):
    shard = from_records(["a", "b", "c"], [[1], [2, 2], [3, 3, 3]], [[1], [0, 1], [0, 0, 1]], 10, 0)
    sub = shard.select([2, 0])
    assert sub.keys == ["c", "a"] and sub.record(0)[0].tolist() == [3, 3, 3] and sub.offsets.tolist() == [0, 3, 4]
    path = tmp_path / "bad.shard"
    write_shard(str(path), shard)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ConfigError):
        read_shard(str(path))
    path.write_bytes(b"NOTSHARD" + b"\0" * 8)
    with pytest.raises(ConfigError):
        read_shard(str(path))
