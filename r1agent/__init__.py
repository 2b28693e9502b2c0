"""r1agent: a GRPO trainer and the four DeepSeek-R1 stages over Gymnasium text envs."""

__version__ = "0.1.0"
