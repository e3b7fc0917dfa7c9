"""RLHF works on the demo task: starting from an under-trained sft model, a reward model on rule-labelled
preference pairs and RL (GRPO) against it give a model whose held-out answers win over the sft model's by the
rule that made the preference data (exact-reversal), at a win rate of at least 0.6. Runs
scripts/rlhf_effect.py end to end (about a minute and a half on two cores) without its DPO comparison."""

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def test_rl_model_beats_sft_model_by_the_rule(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(HERE / "scripts" / "rlhf_effect.py"), "--work", str(tmp_path), "--seed", "0", "--skip-dpo"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    print(json.dumps(summary))
    assert summary["win_rate_rl_vs_sft"] >= 0.6, summary
    assert summary["exact_match_rl"] > summary["exact_match_sft"], summary
