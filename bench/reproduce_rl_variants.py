"""Finding 1 of ``r1agent reproduce`` under other RL settings: stage 2 again, one change.

Takes a finished (or partly finished) ``r1agent reproduce`` run and trains stage 2 again
from one seed's cold start with trainer settings changed, then prints the held-out pass@1
gain per env next to the cold start's, with the run's own evaluation (600 problems, T=0.6,
top-p 0.95, cached as ``eval.json``). ``--target`` first makes a new cold start that stops
at another quick-eval pass@1 (the run's base and data; written beside the run's own).

Usage::

    python bench/reproduce_rl_variants.py runs/reproduce --seed 0 --name lr1e-4 --set lr=1e-4
    python bench/reproduce_rl_variants.py runs/reproduce --seed 1 --name steps200 --set steps=200
    python bench/reproduce_rl_variants.py runs/reproduce --seed 0 --name later --target 0.45 \
        --min-pass-k 0.7
    python bench/reproduce_rl_variants.py runs/reproduce --seed 0 --name cd2 \
        --config rl_phases=null 'rl_mix={"r1/CountdownEasy-v0": 2}' rl_steps=200

Variants land in ``RUN/seedN/variants/NAME``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from pydantic import ValidationError

from r1agent.recipes.reproduce import ReproduceConfig, cold_start, evaluate, rl_arm


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", help="an r1agent reproduce output directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", required=True, help="the variant's directory name")
    ap.add_argument("--set", nargs="*", default=[], help="trainer settings, key=value")
    ap.add_argument("--config", nargs="*", default=[], help="ReproduceConfig fields, key=value")
    ap.add_argument("--target", type=float, help="new cold start stopping at this pass@1")
    ap.add_argument("--min-pass-k", type=float, help="... with pass@8 at least this (run's own)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"[{args.name}] %(message)s")
    torch.set_num_threads(args.threads)
    run = Path(args.run_dir).resolve()
    saved = json.loads((run / "reproduce_config.json").read_text())
    try:
        config = ReproduceConfig(
            **{**saved, **_pairs(args.config, "--config"), "output_dir": str(run)}
        )
    except ValidationError as exc:
        raise SystemExit(f"bad --config: {exc}") from None
    root = run / f"seed{args.seed}"
    if not (root / "base" / "stage.json").is_file():
        raise SystemExit(f"no stage-0 base in {root}: run r1agent reproduce first")
    overrides = _pairs(args.set, "--set")
    out = root / "variants" / args.name
    start = root / "stage1"
    if args.target is not None:
        stop = {"target_pass1": args.target}
        if args.min_pass_k is not None:
            stop["min_pass_k"] = args.min_pass_k
        config = config.model_copy(update=stop)
        start = cold_start(config, out / "stage1", root / "base", args.seed)
    if not (start / "stage.json").is_file():
        raise SystemExit(f"no cold start in {start}: run r1agent reproduce first")
    try:
        stage2 = rl_arm(config, out / "stage2", start, {}, args.seed, overrides=overrides)
    except ValidationError as exc:
        raise SystemExit(f"bad --set: {exc}") from None
    before, after = _pass1(evaluate(config, start)), _pass1(evaluate(config, stage2))
    for env, x in before.items():
        print(
            f"{args.name} seed {args.seed} {env}: {x:.3f} -> {after[env]:.3f} ({after[env] - x:+.3f})"
        )


def _pairs(items: list[str], flag: str) -> dict[str, object]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{flag} takes key=value, got: {item!r}")
        pairs[key] = _value(value)
    return pairs


def _pass1(report: dict) -> dict[str, float]:
    return {r["env_id"]: r["pass@1"] for r in report["envs"]}


if __name__ == "__main__":
    main()
