"""The report of ``r1agent reproduce``: ``summary.json``, ``report.md`` and plots.

Each seed's run (:func:`r1agent.recipes.reproduce.run_seed`) hands over its checkpoints,
their held-out evaluations and its timings; this module turns them into one section per
finding — the paper's claim, the measurement per seed, its mean and spread over seeds, and
what the toy setting can and cannot show. Outcomes are stated as measured: a finding that
does not appear is reported as not appearing.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from r1agent.eval.report import CURVES, curve, find_metrics_file, read_metrics

#: What DeepSeek-R1 (Nature 2025 / arXiv 2501.12948) reports, per finding.
CLAIMS = {
    "rl_after_cold_start": "Reasoning-oriented RL after a small cold start raises accuracy "
    "on reasoning benchmarks well above the cold-start (SFT) checkpoint.",
    "r1_zero": "Pure RL from the base model (R1-Zero), with only accuracy and format rewards, "
    "learns the output format and improves accuracy, and its responses grow longer as "
    "training goes on; the cold start makes RL converge faster and read better.",
    "language": "Adding a language-consistency reward (the share of the chain of thought in "
    "the prompt's language) removes language mixing, at a small cost in accuracy.",
    "distillation": "Distilling a strong reasoner's samples into a smaller model beats "
    "large-scale RL on that smaller model itself.",
}
CAVEATS = {
    "rl_after_cold_start": "A ~1M-parameter model on one-digit arithmetic and 3-number "
    "Countdown; the cold start stops at the first checkpoint whose quick eval reaches "
    "`target_pass1` with pass@8 at least `min_pass_k` (RL headroom), so the gain shows that "
    "reward alone teaches here, not how far RL goes on hard problems. The cold-start data "
    "hold one Countdown chain for every four arithmetic ones (`cold_start_mix`). Every RL "
    "arm runs in phases (`rl_phases`): Countdown alone for two thirds of its steps, then the "
    "arithmetic envs. On batches that mixed the three envs (any weights, learning rates and their "
    "decay, steps, batch sizes or temperatures we tried) Countdown gained +0.07 to +0.13 on "
    "1000 problems per env, about half of what Countdown alone gained in the same steps, "
    "and the arithmetic phase that follows keeps most of that gain. RL sharpens what the "
    "cold start sometimes gets right: 8 samples at T=1 solve about 55% of the Countdown "
    "problems before and after RL, and the others give GRPO nothing to learn from (most "
    "failures end in a last step that misses the target but is written equal to it). "
    "200 held-out problems per env leave about ±0.04 of sampling noise on each gain.",
    "r1_zero": "Our base read the prompts followed by worked solutions in free form (ending "
    "'The answer is …', no tags) — the kind of text a real base has seen — so accuracy can "
    "rise without the format; the format tags appear only in the prompt's instructions and "
    "must be discovered by sampling. A base that is rarely right leaves GRPO little to "
    "amplify (a group whose 8 answers are all wrong has zero advantage), and 96 new tokens "
    "cap the length, so the paper's long-CoT emergence is out of reach at this scale.",
    "language": "Mixing here is sentence-level and comes from the cold-start data we wrote; "
    "the reward is the share of chain-of-thought words in the prompt's language (each Han "
    "character one word). It shows the reward steers the policy, not that it fixes "
    "mixing that arises on its own in a large model.",
    "distillation": "The teacher is itself a tiny model (the language-reward RL checkpoint), "
    "the student a quarter of its size, and 'large-scale RL' is a minute or two of GRPO "
    "from the student base (pretrained like the teacher's base).",
}


def _mean_sd(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def per_env(ev: Mapping[str, Any], key: str = "pass@1") -> dict[str, float]:
    """``{env_id: value}`` of one evaluation's per-env rows."""
    return {row["env_id"]: float(row[key]) for row in ev["envs"]}


def _mean_over(ev: Mapping[str, Any], env_ids: Sequence[str], key: str) -> float:
    rows = per_env(ev, key)
    return sum(rows[e] for e in env_ids) / len(env_ids)


def _curves(run_dir: Path) -> dict[str, list[float]]:
    f = find_metrics_file(run_dir)
    rows = read_metrics(f) if f is not None else []
    out: dict[str, list[float]] = {}
    steps, _ = curve(rows, ("charts/reward",))
    out["step"] = steps
    _, out["format_reward"] = curve(rows, ("rewards/format",))
    _, out["accuracy"] = curve(rows, CURVES["accuracy"])
    _, out["response_length"] = curve(rows, CURVES["response length"])
    return out


def seed_findings(run: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The four findings' numbers of one seed's run."""
    ck, ev = run["checkpoints"], run["evals"]
    lang_envs = settings["language_env_ids"]

    def arm(name: str) -> dict[str, Any]:
        return {
            "checkpoint": ck[name],
            "single_language_share": _mean_over(ev[name], lang_envs, "single_language"),
            "pass@1": _mean_over(ev[name], lang_envs, "pass@1"),
        }

    return {
        "rl_after_cold_start": {
            "seed": run["seed"],
            "stage1": ck["stage1"],
            "stage2": ck["stage2"],
            "pass@1": {"stage1": per_env(ev["stage1"]), "stage2": per_env(ev["stage2"])},
            "cold_start_steps": run["stage1"].get("steps"),
        },
        "r1_zero": {
            "seed": run["seed"],
            "checkpoint": ck["r1_zero"],
            "cold_start_checkpoint": ck["stage2"],
            "pass@1": {
                "base": ev["base"]["overall"]["pass@1"],
                "r1_zero": ev["r1_zero"]["overall"]["pass@1"],
                "cold_start_rl": ev["stage2"]["overall"]["pass@1"],
            },
            "format_rate": {
                "base": _mean_over(ev["base"], settings["env_ids"], "format_rate"),
                "r1_zero": _mean_over(ev["r1_zero"], settings["env_ids"], "format_rate"),
            },
            "curve": _curves(Path(ck["r1_zero"])),
            "cold_start_curve": _curves(Path(ck["stage2"])),
        },
        "language": {
            "seed": run["seed"],
            "env_ids": list(lang_envs),
            "stage1": arm("stage1"),
            "with_reward": arm("stage2_language"),
            "without_reward": arm("stage2"),
        },
        "distillation": {
            "seed": run["seed"],
            "teacher": ck["stage2_language"],
            "teacher_params": run["params"]["teacher"],
            "student_params": run["params"]["student"],
            "budget_s": run["distill_budget_s"],
            "distilled": {
                "checkpoint": ck["distilled"],
                "pass@1": ev["distilled"]["overall"]["pass@1"],
            },
            "rl": {
                "checkpoint": ck["student_rl"],
                "pass@1": ev["student_rl"]["overall"]["pass@1"],
                "steps": run.get("student_rl_steps"),
            },
            "teacher_pass@1": ev["stage2_language"]["overall"]["pass@1"],
        },
    }


def write_reproduce_report(
    out: Path, runs: Sequence[Mapping[str, Any]], settings: Mapping[str, Any], *, wall_s: float
) -> dict[str, Any]:
    """Write ``summary.json``, ``report.md`` and the plots; returns the summary."""
    per_seed = [seed_findings(r, settings) for r in runs]
    findings = {name: [s[name] for s in per_seed] for name in CLAIMS}
    summary = {
        "env_ids": list(settings["env_ids"]),
        "prompt_format": settings["prompt_format"],
        "max_new_tokens": settings["max_new_tokens"],
        "eval": settings["eval"],
        "wall_s": wall_s,
        "pieces_s": round(max(sum(r["timings"].values()) for r in runs), 1),
        "timings": {f"seed{r['seed']}": r["timings"] for r in runs},
        "checks": checks(findings),
        "findings": findings,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_r1_zero(findings["r1_zero"], out)
    plot_rl_gain(findings["rl_after_cold_start"], out)
    (out / "report.md").write_text(markdown(summary))
    return summary


def checks(findings: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """The measured outcome of each finding, as booleans and deltas (no thresholds tuned)."""
    rl = findings["rl_after_cold_start"]
    gains = [
        {e: r["pass@1"]["stage2"][e] - r["pass@1"]["stage1"][e] for e in r["pass@1"]["stage1"]}
        for r in rl
    ]
    lang = findings["language"]
    share = [
        r["with_reward"]["single_language_share"] - r["without_reward"]["single_language_share"]
        for r in lang
    ]
    acc = [r["with_reward"]["pass@1"] - r["without_reward"]["pass@1"] for r in lang]
    zero = findings["r1_zero"]
    dist = findings["distillation"]
    return {
        "rl_gain_per_env": gains,
        "rl_min_gain": min(min(g.values()) for g in gains),
        "language_share_gain": share,
        "language_accuracy_change": acc,
        "r1_zero_format_gain": [
            r["format_rate"]["r1_zero"] - r["format_rate"]["base"] for r in zero
        ],
        "r1_zero_over_base": [r["pass@1"]["r1_zero"] - r["pass@1"]["base"] for r in zero],
        "r1_zero_minus_cold_start": [
            r["pass@1"]["r1_zero"] - r["pass@1"]["cold_start_rl"] for r in zero
        ],
        "distilled_minus_rl": [r["distilled"]["pass@1"] - r["rl"]["pass@1"] for r in dist],
    }


# --------------------------------------------------------------------------- plots


def plot_r1_zero(rows: Sequence[Mapping[str, Any]], out: Path) -> Path | None:
    """Format reward, accuracy and response length per step: R1-Zero vs cold-started RL."""
    panels = (
        ("format_reward", "format reward"),
        ("accuracy", "accuracy"),
        ("response_length", "response length (tokens)"),
    )
    fig = Figure(figsize=(15, 3.6))
    axes = fig.subplots(1, len(panels))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for r in rows:
            for name, c, style in (
                ("R1-Zero", r["curve"], "-"),
                ("cold start + RL", r["cold_start_curve"], "--"),
            ):
                n = min(len(c.get("step", [])), len(c.get(key, [])))
                if n:
                    ax.plot(c["step"][:n], c[key][:n], style, label=f"{name}, seed {r['seed']}")
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "r1_zero_curves.png"
    fig.savefig(path, dpi=110)
    return path


def plot_rl_gain(rows: Sequence[Mapping[str, Any]], out: Path) -> Path | None:
    """Held-out pass@1 per env, stage 1 vs stage 2, one pair of bars per env and seed."""
    if not rows:
        return None
    envs = list(rows[0]["pass@1"]["stage1"])
    fig = Figure(figsize=(2.2 * len(envs) * len(rows) + 2, 3.6))
    ax = fig.subplots()
    labels, x = [], 0.0
    for r in rows:
        for e in envs:
            ax.bar(x, r["pass@1"]["stage1"][e], 0.4, color="tab:gray")
            ax.bar(x + 0.4, r["pass@1"]["stage2"][e], 0.4, color="tab:blue")
            labels.append((x + 0.2, f"{e.split('/')[-1]}\nseed {r['seed']}"))
            x += 1.2
    ax.set_xticks([p for p, _ in labels], [t for _, t in labels], fontsize=7)
    ax.set_ylabel("held-out pass@1")
    ax.set_ylim(0, 1)
    ax.legend(["stage 1 (cold start)", "stage 2 (RL)"], fontsize=8)
    fig.tight_layout()
    path = out / "rl_after_cold_start.png"
    fig.savefig(path, dpi=110)
    return path


# --------------------------------------------------------------------------- Markdown


def markdown(summary: Mapping[str, Any]) -> str:
    """``report.md``: one section per finding (claim, measurement, spread, caveat)."""
    f, c = summary["findings"], summary["checks"]
    ev = summary["eval"]
    lines = [
        "# Reproducing DeepSeek-R1's findings at toy scale",
        "",
        f"Envs: {', '.join(f'`{e}`' for e in summary['env_ids'])}; prompts "
        f"`{summary['prompt_format']}`, at most {summary['max_new_tokens']} new tokens. "
        f"Held-out problems: env seeds 10,000,000 + i, {ev['n']} per checkpoint (envs in "
        f"turn), {ev['k']} samples each at T={ev['temperature']}, top-p {ev['top_p']}. "
        f"{len(f['rl_after_cold_start'])} seed(s); spread is mean ± standard deviation over "
        f"seeds. Time: {summary['pieces_s']:.0f} s of pieces on the slowest seed (seeds run "
        f"side by side; a piece finished earlier is not rerun), {summary['wall_s']:.0f} s for "
        "this invocation.",
        "",
    ]
    lines += _rl_section(f["rl_after_cold_start"], c)
    lines += _zero_section(f["r1_zero"], c)
    lines += _language_section(f["language"], c)
    lines += _distill_section(f["distillation"], c)
    return "\n".join(lines) + "\n"


def _yes(deltas: Sequence[float], threshold: float) -> str:
    """``yes`` when every seed's delta exceeds ``threshold``, ``no`` when none does."""
    hits = sum(d > threshold for d in deltas)
    return (
        "yes" if hits == len(deltas) else "no" if hits == 0 else f"in {hits} of {len(deltas)} seeds"
    )


def _head(name: str, title: str) -> list[str]:
    return [f"## {title}", "", f"**Paper:** {CLAIMS[name]}", ""]


def _rl_section(rows: Sequence[Mapping[str, Any]], c: Mapping[str, Any]) -> list[str]:
    envs = list(rows[0]["pass@1"]["stage1"])
    lines = _head("rl_after_cold_start", "1. RL after the cold start")
    lines += [
        "Stage 1: SFT on the mixed-language cold start, stopped at the first checkpoint with "
        "RL headroom; stage 2: GRPO from it with rule-based accuracy and format rewards (the "
        "arm that adds the language reward is finding 3's).",
        "",
    ]
    lines += ["| env | stage 1 | stage 2 | gain |", "|---|---|---|---|"]
    for e in envs:
        s1 = [r["pass@1"]["stage1"][e] for r in rows]
        s2 = [r["pass@1"]["stage2"][e] for r in rows]
        lines.append(
            f"| `{e}` | {_mean_sd(s1)} | {_mean_sd(s2)} | {_mean_sd([b - a for a, b in zip(s1, s2, strict=True)])} |"
        )
    verdict = "yes" if c["rl_min_gain"] > 0 else "no"
    lines += [
        "",
        f"**Measured:** stage 2 above stage 1 on every env in every seed: {verdict}; the "
        f"smallest gain (any env, any seed) is {c['rl_min_gain']:+.3f}. "
        "![](rl_after_cold_start.png)",
        "",
        f"**Toy setting:** {CAVEATS['rl_after_cold_start']}",
        "",
    ]
    return lines


def _zero_section(rows: Sequence[Mapping[str, Any]], c: Mapping[str, Any]) -> list[str]:
    lines = _head("r1_zero", "2. R1-Zero: RL from the base, no cold start")
    p = lambda key: _mean_sd([r["pass@1"][key] for r in rows])  # noqa: E731
    fmt = lambda key: _mean_sd([r["format_rate"][key] for r in rows])  # noqa: E731
    first_last = []
    for r in rows:
        cv = r["curve"]
        if cv["response_length"]:
            k = max(1, len(cv["response_length"]) // 5)
            head, tail = cv["response_length"][:k], cv["response_length"][-k:]
            fhead, ftail = cv["format_reward"][:k], cv["format_reward"][-k:]
            ahead, atail = cv["accuracy"][:k], cv["accuracy"][-k:]
            first_last.append(
                f"seed {r['seed']}: format reward {statistics.mean(fhead):.2f} → "
                f"{statistics.mean(ftail):.2f}, accuracy {statistics.mean(ahead):.3f} → "
                f"{statistics.mean(atail):.3f}, response length {statistics.mean(head):.1f} → "
                f"{statistics.mean(tail):.1f} tokens"
            )
    lines += [
        "| | base | R1-Zero (RL from base) | cold start + RL (same rewards, same steps) |",
        "|---|---|---|---|",
        f"| held-out pass@1 | {p('base')} | {p('r1_zero')} | {p('cold_start_rl')} |",
        f"| held-out format rate | {fmt('base')} | {fmt('r1_zero')} | |",
        "",
        "**Measured during training** (first vs last fifth of the steps): "
        + ("; ".join(first_last) or "no steps recorded")
        + ". ![](r1_zero_curves.png)",
        "",
        f"**Outcome:** R1-Zero learned the format: {_yes(c['r1_zero_format_gain'], 0.05)}; "
        f"held-out pass@1 rose over the base: {_yes(c['r1_zero_over_base'], 0.02)} "
        f"({_mean_sd(c['r1_zero_over_base'])}); R1-Zero minus cold start + RL at the same "
        f"budget: {_mean_sd(c['r1_zero_minus_cold_start'])}.",
        "",
        f"**Toy setting:** {CAVEATS['r1_zero']}",
        "",
    ]
    return lines


def _language_section(rows: Sequence[Mapping[str, Any]], c: Mapping[str, Any]) -> list[str]:
    lines = _head("language", "3. Language consistency")
    get = lambda arm, key: _mean_sd([r[arm][key] for r in rows])  # noqa: E731
    envs = ", ".join(f"`{e}`" for e in rows[0]["env_ids"])
    lines += [
        f"Bilingual prompts ({envs}); the cold start mixes English and Chinese sentences. "
        "Single-language share: the share of held-out samples whose whole chain of thought "
        "is in the prompt's language.",
        "",
        "| | cold start | RL with language reward | RL without |",
        "|---|---|---|---|",
        f"| single-language share | {get('stage1', 'single_language_share')} | "
        f"{get('with_reward', 'single_language_share')} | {get('without_reward', 'single_language_share')} |",
        f"| pass@1 | {get('stage1', 'pass@1')} | {get('with_reward', 'pass@1')} | "
        f"{get('without_reward', 'pass@1')} |",
        "",
        f"**Measured:** the reward changes the single-language share by "
        f"{_mean_sd(c['language_share_gain'])} and pass@1 by "
        f"{_mean_sd(c['language_accuracy_change'])} (with minus without).",
        "",
        f"**Toy setting:** {CAVEATS['language']}",
        "",
    ]
    return lines


def _distill_section(rows: Sequence[Mapping[str, Any]], c: Mapping[str, Any]) -> list[str]:
    lines = _head("distillation", "4. Distillation vs RL on a smaller model")
    r0 = rows[0]
    ratio = r0["student_params"] / r0["teacher_params"]
    lines += [
        f"Student: {r0['student_params']:,} parameters ({ratio:.2f} of the teacher's "
        f"{r0['teacher_params']:,}), same tokenizer, pretrained like the base. Teacher: the "
        "RL model trained with the language reward (the recipe's stage 2; pass@1 "
        f"{_mean_sd([r['teacher_pass@1'] for r in rows])}); its samples pass the env's "
        "check and the readability filter (one language, no code) before the SFT.",
        "",
        "| | distilled (SFT on teacher samples) | RL on the student, same wall clock |",
        "|---|---|---|",
        f"| held-out pass@1 | {_mean_sd([r['distilled']['pass@1'] for r in rows])} | "
        f"{_mean_sd([r['rl']['pass@1'] for r in rows])} |",
        f"| budget | {_mean_sd([r['budget_s'] for r in rows])} s | same; "
        f"{', '.join(str(r['rl']['steps']) for r in rows)} GRPO steps |",
        "",
        f"**Measured:** distilled minus RL: {_mean_sd(c['distilled_minus_rl'])}.",
        "",
        f"**Toy setting:** {CAVEATS['distillation']}",
        "",
    ]
    return lines
