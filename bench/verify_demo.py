"""Re-check a demo's report.json independently, with plain transformers.

For each checkpoint in ``DIR/report.json``: load it with ``AutoModelForCausalLM`` /
``AutoTokenizer``, and for problem ``i < n`` reset ``env_ids[i % len]`` (default kwargs)
with ``seed=10_000_000 + i``, feed the observation, sample one completion with
``model.generate(do_sample=True, temperature=0.6, top_p=0.95, max_new_tokens=...)``, decode
the new tokens with ``skip_special_tokens=True`` and grade with ``env.step`` →
``info["correct"]``. Prints the checker's pass@1 next to the report's.

Usage: ``python bench/verify_demo.py runs/demo-XXXX [--n 500] [--stages stage1,stage2,stage4]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import r1envs  # noqa: F401


def check(
    path: str, env_ids: list[str], n: int, max_new_tokens: int, batch: int, seed: int
) -> float:
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    envs = {e: gym.make(e) for e in dict.fromkeys(env_ids)}
    problems = []
    for i in range(n):
        env_id = env_ids[i % len(env_ids)]
        obs, _ = envs[env_id].reset(seed=10_000_000 + i)
        problems.append((env_id, 10_000_000 + i, obs))
    torch.manual_seed(seed)
    correct = 0
    for s in range(0, n, batch):
        chunk = problems[s : s + batch]
        enc = tok([p for *_, p in chunk], return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=0.6,
                top_p=0.95,
                max_new_tokens=max_new_tokens,
                pad_token_id=tok.pad_token_id,
            )
        for (env_id, env_seed, _), row in zip(
            chunk, out[:, enc["input_ids"].shape[1] :], strict=True
        ):
            text = tok.decode(row, skip_special_tokens=True)
            envs[env_id].reset(seed=env_seed)
            _, _, _, _, info = envs[env_id].step(text)
            correct += bool(info["correct"])
    return correct / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--stages", default="stage1,stage2,stage3,stage4,distill")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--max-new-tokens", type=int, default=96, help="when there is no report.json")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest for tiny models)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    report_path = Path(args.run_dir) / "report.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text())
    else:  # a pipeline run without the demo's report: check the stage checkpoints found there
        run = Path(args.run_dir)
        report = {
            "stages": {
                s: {
                    "checkpoint": str(run / s),
                    "pass@1": json.loads((run / s / "eval.json").read_text())["overall"]["pass@1"]
                    if (run / s / "eval.json").is_file()
                    else float("nan"),
                }
                for s in args.stages.split(",")
                if (run / s / "config.json").is_file()
            },
            "env_ids": ["r1/Arithmetic-v0"],
            "max_new_tokens": args.max_new_tokens,
        }
    rows = {}
    for stage in args.stages.split(","):
        if stage not in report["stages"]:
            print(f"{stage}: no checkpoint")
            continue
        entry = report["stages"][stage]
        t = time.time()
        got = check(
            entry["checkpoint"],
            report["env_ids"],
            args.n,
            report["max_new_tokens"],
            args.batch,
            args.seed,
        )
        rows[stage] = got
        ok = abs(got - entry["pass@1"]) <= 0.08
        print(
            f"{stage}: report pass@1={entry['pass@1']:.3f} checker pass@1={got:.3f} "
            f"diff={got - entry['pass@1']:+.3f} {'OK' if ok else 'MISMATCH'} ({time.time() - t:.0f} s)",
            flush=True,
        )
    if "stage1" in rows and "stage2" in rows:
        print(f"stage2 - stage1 = {rows['stage2'] - rows['stage1']:+.3f} (need >= +0.10)")
    if "stage1" in rows and "stage4" in rows:
        print(f"stage4 - stage1 = {rows['stage4'] - rows['stage1']:+.3f} (need > 0)")


if __name__ == "__main__":
    main()
