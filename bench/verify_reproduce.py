"""Re-check ``r1agent reproduce``'s ``summary.json`` independently, with plain transformers.

For every checkpoint the summary names: load it with ``AutoModelForCausalLM`` /
``AutoTokenizer``; for problem ``i < n`` of each env (default ``gym.make`` kwargs), reset with
``seed=10_000_000 + i``, feed the observation, sample one completion with
``model.generate(do_sample=True, temperature=0.6, top_p=0.95, max_new_tokens=...)``, decode
the new tokens with ``skip_special_tokens=True`` and grade with ``env.step``:
``info["correct"]`` for pass@1, ``info["rewards"]["language"] == 1.0`` for the
single-language share. Prints the checker's numbers next to the summary's.

Usage: ``python bench/verify_reproduce.py runs/reproduce-XXXX [--n 200]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import r1envs  # noqa: F401


def check(path: str, env_ids: list[str], n: int, max_new_tokens: int, seed: int) -> dict:
    """``{env_id: {"pass@1", "single_language"}}`` over ``n`` problems per env."""
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(seed)
    out = {}
    for env_id in env_ids:
        env = gym.make(env_id)
        prompts = [env.reset(seed=10_000_000 + i)[0] for i in range(n)]
        correct = single = 0
        for s in range(0, n, 100):
            enc = tok(prompts[s : s + 100], return_tensors="pt", padding=True)
            with torch.no_grad():
                gen = model.generate(
                    **enc,
                    do_sample=True,
                    temperature=0.6,
                    top_p=0.95,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=tok.pad_token_id,
                )
            for j, row in enumerate(gen[:, enc["input_ids"].shape[1] :]):
                env.reset(seed=10_000_000 + s + j)
                info = env.step(tok.decode(row, skip_special_tokens=True))[4]
                correct += bool(info["correct"])
                single += info["rewards"].get("language", 0.0) >= 1.0
        out[env_id] = {"pass@1": correct / n, "single_language": single / n}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--n", type=int, default=200, help="problems per env")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    summary = json.loads((Path(args.run_dir) / "summary.json").read_text())
    env_ids, max_new = summary["env_ids"], summary["max_new_tokens"]
    f = summary["findings"]

    def run(path: str, envs: list[str]) -> dict:
        return check(path, envs, args.n, max_new, args.seed)

    for row in f["rl_after_cold_start"]:
        s1, s2 = run(row["stage1"], env_ids), run(row["stage2"], env_ids)
        for e in env_ids:
            gain = s2[e]["pass@1"] - s1[e]["pass@1"]
            print(
                f"seed {row['seed']} {e}: stage1 {s1[e]['pass@1']:.3f} "
                f"(summary {row['pass@1']['stage1'][e]:.3f}), stage2 {s2[e]['pass@1']:.3f} "
                f"(summary {row['pass@1']['stage2'][e]:.3f}), gain {gain:+.3f} (need >= +0.10)",
                flush=True,
            )
    for row in f["language"]:
        envs = row["env_ids"]
        got = {}
        for arm in ("with_reward", "without_reward"):
            res = run(row[arm]["checkpoint"], envs)
            got[arm] = sum(res[e]["single_language"] for e in envs) / len(envs)
            acc = sum(res[e]["pass@1"] for e in envs) / len(envs)
            print(
                f"seed {row['seed']} language {arm}: single-language {got[arm]:.3f} "
                f"(summary {row[arm]['single_language_share']:.3f}), pass@1 {acc:.3f} "
                f"(summary {row[arm]['pass@1']:.3f})",
                flush=True,
            )
        print(
            f"seed {row['seed']} language share gain "
            f"{got['with_reward'] - got['without_reward']:+.3f} (need >= +0.20)"
        )
    for row in f["distillation"]:
        for arm in ("distilled", "rl"):
            res = run(row[arm]["checkpoint"], env_ids)
            acc = sum(res[e]["pass@1"] for e in env_ids) / len(env_ids)
            print(
                f"seed {row['seed']} distillation {arm}: pass@1 {acc:.3f} "
                f"(summary {row[arm]['pass@1']:.3f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
