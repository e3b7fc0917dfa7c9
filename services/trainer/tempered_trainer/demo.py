"""The demo task, "reverse a list of digits", as data files: used by the tests and by the example pipeline.

    prompt "reverse 3 9 1 4"   response "4 1 9 3"     (3 to 5 digits)

Preference pairs keep the correct reversal as `chosen`; `rejected` is the list unreversed or the reversal
with two neighbouring digits swapped. Run `python -m tempered_trainer.demo --out DIR` to write
records.jsonl (train + held-out, keys "train-*" / "heldout-*") and preferences.jsonl.
"""

import argparse
import json
import os
import random


def _digits(rng: random.Random) -> list:
    return [str(rng.randrange(10)) for _ in range(rng.randint(3, 5))]


def _wrong(rng: random.Random, digits: list) -> list:
    rev = digits[::-1]
    if rng.random() < 0.5 and digits != rev:
        return digits
    while True:  # swap two neighbouring, different digits so the answer really is wrong
        i = rng.randrange(len(rev) - 1)
        if rev[i] != rev[i + 1]:
            rev[i], rev[i + 1] = rev[i + 1], rev[i]
            return rev
        if len(set(rev)) == 1:  # "7 7 7": every rearrangement is correct, so drop a digit instead
            return rev[:-1]


def make_task(n_train: int = 2000, n_heldout: int = 200, n_prefs: int = 300, seed: int = 0):
    """(train records, held-out records, preference pairs); held-out lists never occur in training."""
    rng = random.Random(seed)
    seen, records = set(), []
    while len(records) < n_train + n_heldout:
        d = _digits(rng)
        if tuple(d) in seen:
            continue
        seen.add(tuple(d))
        split = "train" if len(records) < n_train else "heldout"
        records.append({"key": f"{split}-{len(records):06d}", "prompt": "reverse " + " ".join(d), "response": " ".join(d[::-1])})
    prefs = []
    for _ in range(n_prefs):
        d = _digits(rng)
        prefs.append({"prompt": "reverse " + " ".join(d), "chosen": " ".join(d[::-1]), "rejected": " ".join(_wrong(rng, d))})
    return records[:n_train], records[n_train:], prefs


def write_jsonl(path: str, rows) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--heldout", type=int, default=200)
    p.add_argument("--prefs", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    train, heldout, prefs = make_task(a.train, a.heldout, a.prefs, a.seed)
    write_jsonl(os.path.join(a.out, "records.jsonl"), train + heldout)
    write_jsonl(os.path.join(a.out, "preferences.jsonl"), prefs)


if __name__ == "__main__":
    main()
