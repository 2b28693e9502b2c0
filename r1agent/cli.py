"""The ``r1agent`` command line (typer): a thin layer over per-command functions.

``r1agent grpo CONFIG.yaml key=value ...`` trains with GRPO; ``r1agent tiny DIR`` builds the
tiny model. Other commands (the R1 stages, pipeline, eval, demo) register themselves on
:data:`app` from their own modules.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="r1agent: GRPO and the R1 stages."
)

__all__ = ["app", "main"]


@app.command()
def grpo(
    config: Path = typer.Argument(..., help="YAML config (see examples/grpo_tiny.yaml)"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, dotted keys"),
) -> None:
    """Train a model with GRPO on a mix of Gymnasium text envs."""
    from r1agent.config import load_config
    from r1agent.trainer import train_grpo

    cfg = load_config(config, overrides or [])
    summary = train_grpo(cfg)
    if summary.get("final") is not None:
        typer.echo(json.dumps({"checkpoint": summary["checkpoint"], **summary["final"]}, indent=2))


@app.command()
def tiny(
    out_dir: Path = typer.Argument(..., help="directory to write the model into"),
    hidden: int = typer.Option(128, help="hidden size"),
    layers: int = typer.Option(4, help="decoder layers"),
    vocab_size: int = typer.Option(1024, help="BPE vocabulary size"),
    seed: int = typer.Option(0, help="seed for the corpus sample and the weights"),
) -> None:
    """Build the tiny model (local tokenizer, untied Qwen2) as a Hugging Face directory."""
    from r1agent.tiny import build_tiny_model

    path = build_tiny_model(out_dir, hidden=hidden, layers=layers, vocab_size=vocab_size, seed=seed)
    typer.echo(str(path))


def main() -> None:
    """Entry point of the ``r1agent`` script."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app()


if __name__ == "__main__":
    main()
