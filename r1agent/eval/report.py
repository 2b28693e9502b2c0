"""Pipeline report: Markdown, PNG plots and a JSON summary.

Plots (matplotlib figures drawn off-screen, no pyplot state):

* ``training_curves.png`` — for each RL stage, reward, accuracy and mean response length per
  step (DeepSeek-R1's figure 7: response length grows as the model learns to think longer);
* ``pass_at_k.png`` — pass@k per stage, one line per stage over k.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from r1agent.infra.metrics import read_jsonl

#: Metric names looked up in an RL stage's metrics JSONL, first match wins.
CURVES: dict[str, tuple[str, ...]] = {
    "reward": ("charts/reward", "reward/mean", "rewards/total", "reward"),
    "accuracy": ("charts/accuracy", "accuracy", "rewards/accuracy", "reward/accuracy"),
    "response length": (
        "charts/response_length_mean",
        "response_length/mean",
        "completions/mean_length",
        "response_length",
    ),
}


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics JSONL file (missing file: no rows; bad lines skipped)."""
    return read_jsonl(path)


def find_metrics_file(stage_dir: Path) -> Path | None:
    """The RL metrics JSONL of a stage directory, if any."""
    for name in ("metrics.jsonl", "grpo/metrics.jsonl", "run/metrics.jsonl"):
        if (stage_dir / name).is_file():
            return stage_dir / name
    found = sorted(stage_dir.rglob("metrics.jsonl"))
    return found[0] if found else None


def curve(
    rows: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> tuple[list[float], list[float]]:
    """``(steps, values)`` of the first metric name in ``names`` present in the rows."""
    for name in names:
        pts = [
            (float(r.get("step", i)), float(r[name]))
            for i, r in enumerate(rows)
            if isinstance(r.get(name), (int, float))
        ]
        if pts:
            return [p[0] for p in pts], [p[1] for p in pts]
    return [], []


def plot_training_curves(stage_dirs: Mapping[str, Path], out: Path) -> Path | None:
    """Reward / accuracy / response length per step for each RL stage."""
    series = {}
    for stage, d in stage_dirs.items():
        f = find_metrics_file(d)
        if f is not None:
            series[stage] = read_metrics(f)
    if not series:
        return None
    fig = Figure(figsize=(5 * len(CURVES), 3.6))
    axes = fig.subplots(1, len(CURVES))
    for ax, (title, names) in zip(axes, CURVES.items(), strict=True):
        for stage, rows in series.items():
            x, y = curve(rows, names)
            if x:
                ax.plot(x, y, label=stage)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    path = out / "training_curves.png"
    fig.savefig(path, dpi=110)
    return path


def plot_pass_at_k(results: Mapping[str, Mapping[str, Any]], out: Path) -> Path | None:
    """pass@k over k, one line per evaluated checkpoint."""
    if not results:
        return None
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    for name, res in results.items():
        env = res["envs"][0] if len(res["envs"]) == 1 else None
        src = env if env is not None else res["overall"]
        ks = sorted(int(key.split("@")[1]) for key in src if key.startswith("pass@"))
        ax.plot(ks, [src[f"pass@{k}"] for k in ks], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (held-out)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    path = out / "pass_at_k.png"
    fig.savefig(path, dpi=110)
    return path


def stage_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table of the headline numbers per checkpoint."""
    lines = ["| checkpoint | pass@1 | pass@k | cons@k | mean length |", "|---|---|---|---|---|"]
    for name, res in results.items():
        o = res["overall"]
        pk = next(
            (
                f"{v:.3f} ({key})"
                for key, v in o.items()
                if key.startswith("pass@") and key != "pass@1"
            ),
            "-",
        )
        ck = next((f"{v:.3f}" for key, v in o.items() if key.startswith("cons@")), "-")
        lines.append(f"| {name} | {o['pass@1']:.3f} | {pk} | {ck} | {o['mean_length']:.1f} |")
    return "\n".join(lines)


def write_pipeline_report(
    out: Path,
    config: Mapping[str, Any],
    checkpoints: Mapping[str, Path],
    results: Mapping[str, Mapping[str, Any]],
    timings: Mapping[str, float],
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Write ``pipeline_report.json``, ``report.md`` and the plots into ``out``."""
    curves = plot_training_curves(
        {s: checkpoints[s] for s in ("stage2", "stage4") if s in checkpoints}, out
    )
    passk = plot_pass_at_k(results, out)
    report = {
        "stages": {
            name: {"checkpoint": str(Path(checkpoints[name]).resolve()), **results[name]["overall"]}
            for name in results
        },
        "env_ids": config.get("env_ids"),
        "max_new_tokens": config.get("max_new_tokens"),
        "prompt_format": config.get("prompt_format"),
        "timings_s": dict(timings),
    }
    (out / "pipeline_report.json").write_text(json.dumps(report, indent=2))
    settings = next(iter(results.values()))["settings"] if results else {}
    md = [
        "# R1 pipeline report",
        "",
        f"Envs: {', '.join(config.get('env_ids') or [])}; prompt format: {config.get('prompt_format')}; "
        f"max new tokens: {config.get('max_new_tokens')}.",
        f"Held-out evaluation: {settings.get('n')} problems (env seeds from "
        f"{settings.get('base_seed')}), {settings.get('k')} samples each at T={settings.get('temperature')}, "
        f"top-p {settings.get('top_p')}.",
        "",
        stage_table(results),
        "",
    ]
    if timings:
        md += ["Stage wall times (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()), ""]
    if curves:
        md += ["![training curves](training_curves.png)", ""]
    if passk:
        md += ["![pass@k per stage](pass_at_k.png)", ""]
    md += [*notes]
    (out / "report.md").write_text("\n".join(md) + "\n")
    return report
