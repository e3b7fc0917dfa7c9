"""Read and write `*.shard` files: encoded records with their loss masks (format in CONTRACT.md).

    bytes 0..7    magic "TMPSHRD1"
    bytes 8..11   uint32 LE header length H
    H bytes       UTF-8 JSON header {version, records, keys, offsets, vocab_size, eos_id}
    int32 LE tokens, then uint8 loss mask, offsets[N] of each

The TypeScript side (activities/src/shard.ts) reads and writes the same bytes, e.g. to split a shard by key.
"""

import dataclasses
import json
import os
import struct

import numpy as np

from .events import ConfigError

MAGIC = b"TMPSHRD1"
VERSION = 1


@dataclasses.dataclass
class Shard:
    keys: list
    offsets: np.ndarray  # int64, N + 1 entries, offsets[0] == 0
    tokens: np.ndarray  # int32
    loss_mask: np.ndarray  # uint8, 1 where the token belongs to a response
    vocab_size: int
    eos_id: int

    def __len__(self) -> int:
        return len(self.keys)

    def record(self, i: int):
        """Tokens and loss mask of record i."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.tokens[a:b], self.loss_mask[a:b]

    def select(self, indices) -> "Shard":
        """A new shard holding the given records, in the given order."""
        parts = [self.record(int(i)) for i in indices]
        return from_records(
            [self.keys[int(i)] for i in indices], [p[0] for p in parts], [p[1] for p in parts], self.vocab_size, self.eos_id
        )


def from_records(keys, token_lists, mask_lists, vocab_size: int, eos_id: int) -> Shard:
    lengths = [len(t) for t in token_lists]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    cat = lambda xs, dt: np.concatenate([np.asarray(x, dtype=dt) for x in xs]) if xs else np.zeros(0, dt)  # noqa: E731
    return Shard(list(keys), offsets, cat(token_lists, np.int32), cat(mask_lists, np.uint8), int(vocab_size), int(eos_id))


def write_shard(path: str, shard: Shard) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a shard."""
    header = {
        "version": VERSION,
        "records": len(shard.keys),
        "keys": list(shard.keys),
        "offsets": [int(x) for x in shard.offsets],
        "vocab_size": shard.vocab_size,
        "eos_id": shard.eos_id,
    }
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<I", len(head)))
        f.write(head)
        f.write(shard.tokens.astype("<i4", copy=False).tobytes())
        f.write(shard.loss_mask.astype(np.uint8, copy=False).tobytes())
    os.replace(tmp, path)


def read_shard(path: str) -> Shard:
    with open(path, "rb") as f:
        data = f.read()
    bad = lambda why: ConfigError(f"{path} is not a valid shard: {why}")  # noqa: E731
    if len(data) < 12 or data[:8] != MAGIC:
        raise bad("bad magic")
    (hlen,) = struct.unpack("<I", data[8:12])
    try:
        header = json.loads(data[12 : 12 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"unreadable header ({e})") from e
    if header.get("version") != VERSION:
        raise bad(f"unsupported version {header.get('version')!r}")
    n, offsets = header["records"], np.asarray(header["offsets"], dtype=np.int64)
    if len(header["keys"]) != n or len(offsets) != n + 1 or (n >= 0 and offsets[0] != 0) or np.any(np.diff(offsets) < 0):
        raise bad("inconsistent header")
    total = int(offsets[-1])
    start = 12 + hlen
    if len(data) != start + 5 * total:
        raise bad(f"expected {start + 5 * total} bytes, found {len(data)}")
    tokens = np.frombuffer(data, dtype="<i4", count=total, offset=start).astype(np.int32)
    mask = np.frombuffer(data, dtype=np.uint8, count=total, offset=start + 4 * total).copy()
    return Shard(list(header["keys"]), offsets, tokens, mask, int(header["vocab_size"]), int(header["eos_id"]))
