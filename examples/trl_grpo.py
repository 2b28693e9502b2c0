"""Train a model with TRL's GRPOTrainer on an r1envs environment.

The data set holds the env's prompts (as chat messages) plus the columns the reward function
reads; the reward function re-grades each completion through the env's ``reset``/``step``,
so TRL sees exactly the rewards an r1agent run would.

Usage:
    python examples/trl_grpo.py --model Qwen/Qwen2.5-0.5B-Instruct --env r1/Math-v0 --steps 50
    r1agent tiny runs/tiny   # a tiny local model, no download
    python examples/trl_grpo.py --model runs/tiny --env r1/Arithmetic-v0 --steps 2 --cpu \
        --batch-size 4 --group-size 2 --max-completion-length 32

Needs: pip install 'r1[trl]'
"""

from __future__ import annotations

import argparse

from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from r1envs.integrations.trl import prompt_dataset, reward_function


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", required=True, help="local model folder or hub id")
    ap.add_argument("--env", default="r1/Math-v0", help="r1envs id (see r1envs.list_envs())")
    ap.add_argument("--output-format", default="r1-zero", choices=["r1-zero", "r1"])
    ap.add_argument("--prompts", type=int, default=256, help="problems in the training set")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=16, help="completions per device and step")
    ap.add_argument("--group-size", type=int, default=8, help="completions per prompt (G)")
    ap.add_argument("--max-completion-length", type=int, default=512)
    ap.add_argument("--output-dir", default="runs/trl_grpo")
    ap.add_argument("--cpu", action="store_true", help="train on the CPU in float32")
    args = ap.parse_args()

    make_kwargs = {"output_format": args.output_format}
    dataset = prompt_dataset(args.env, args.prompts, seed=0, **make_kwargs)
    rewards = [
        reward_function(args.env, **make_kwargs),  # the env's weighted reward (accuracy + format)
    ]
    config = GRPOConfig(
        output_dir=args.output_dir,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        num_generations=args.group_size,
        max_completion_length=args.max_completion_length,
        temperature=1.0,
        beta=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=args.cpu,
        bf16=not args.cpu,
        gradient_checkpointing=False,
    )
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(args.model),
        reward_funcs=rewards,
        args=config,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(args.model),
    )
    trainer.train()
    trainer.save_model(args.output_dir)
    print(f"saved to {args.output_dir}; correct rate per step is logged as {args.env}/correct")


if __name__ == "__main__":
    main()
