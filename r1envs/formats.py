"""Output formats: prompt templates, completion parsing and the format reward.

Two formats, chosen with ``gym.make(..., output_format=...)``:

* ``"r1-zero"`` — the DeepSeek-R1-Zero template (paper, table 1). The completion is
  ``<think> reasoning </think> <answer> answer </answer>``. The format reward is 1 when the
  completion is exactly one think block followed by exactly one non-empty answer block.
* ``"r1"`` — the readable cold-start format of DeepSeek-R1:
  ``<|begin_of_reasoning|> reasoning <|end_of_reasoning|> summary``. The reasoning sits
  between the two special delimiters defined here; the summary after them is non-empty and
  states the final answer (math: in ``\\boxed{}``). The format reward is 1 when there is
  exactly one reasoning block at the start and a non-empty summary after it.

Chat templates of reasoning models often pre-fill the opening tag (``<think>\\n``) in the
generation prompt, so the completion itself starts inside the think block. ``parse`` treats a
completion with no opening tag and exactly one closing tag as pre-filled when
``think_prefill`` is ``None`` (auto) or ``True``; ``think_prefill=False`` requires the tag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OutputFormat = Literal["r1-zero", "r1"]
OUTPUT_FORMATS: tuple[str, ...] = ("r1-zero", "r1")

THINK_START, THINK_END = "<think>", "</think>"
ANSWER_START, ANSWER_END = "<answer>", "</answer>"
REASONING_START = "<|begin_of_reasoning|>"
REASONING_END = "<|end_of_reasoning|>"
R1_SPECIAL_TOKENS: tuple[str, ...] = (REASONING_START, REASONING_END)

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
    "process here </think> <answer> answer here </answer>. User: {question}. Assistant:"
)
R1_ZERO_SYSTEM = (
    "The assistant first thinks about the reasoning process in the mind and then provides the "
    "user with the answer. The reasoning process and answer are enclosed within <think> "
    "</think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process here "
    "</think> <answer> answer here </answer>."
)
R1_TEMPLATE = (
    "Solve the problem below. Write your reasoning between "
    f"{REASONING_START} and {REASONING_END}, then a short summary that states the final "
    "answer.\n\nProblem: {question}\n"
)
R1_SYSTEM = (
    f"Reason step by step between {REASONING_START} and {REASONING_END}, then write a short "
    "summary for the user that states the final answer."
)

# Chinese versions of the templates (``prompt_language="zh"``), same tags and structure.
R1_ZERO_TEMPLATE_ZH = (
    "用户与助手之间的对话。用户提出一个问题，助手来解决它。助手先在脑中思考推理过程，然后向用户"
    "给出答案。推理过程和答案分别写在 <think> </think> 和 <answer> </answer> 标签内，即 "
    "<think> 推理过程 </think> <answer> 答案 </answer>。用户：{question} 助手："
)
R1_ZERO_SYSTEM_ZH = (
    "助手先在脑中思考推理过程，然后向用户给出答案。推理过程和答案分别写在 <think> </think> 和 "
    "<answer> </answer> 标签内，即 <think> 推理过程 </think> <answer> 答案 </answer>。"
)
R1_TEMPLATE_ZH = (
    f"解答下面的问题。把推理过程写在 {REASONING_START} 和 {REASONING_END} 之间，然后写一段"
    "简短的总结，给出最终答案。\n\n问题：{question}\n"
)
R1_SYSTEM_ZH = (
    f"在 {REASONING_START} 和 {REASONING_END} 之间逐步推理，然后为用户写一段简短的总结，"
    "给出最终答案。"
)

_TEMPLATES = {
    ("r1-zero", "en"): R1_ZERO_TEMPLATE,
    ("r1", "en"): R1_TEMPLATE,
    ("r1-zero", "zh"): R1_ZERO_TEMPLATE_ZH,
    ("r1", "zh"): R1_TEMPLATE_ZH,
}
_SYSTEMS = {
    ("r1-zero", "en"): R1_ZERO_SYSTEM,
    ("r1", "en"): R1_SYSTEM,
    ("r1-zero", "zh"): R1_ZERO_SYSTEM_ZH,
    ("r1", "zh"): R1_SYSTEM_ZH,
}
#: Languages the built-in prompt templates are written in (``prompt_language``).
PROMPT_LANGUAGES: tuple[str, ...] = ("en", "zh")


def check_format_name(output_format: str) -> OutputFormat:
    """Validate an output format name.

    Raises:
        ValueError: if ``output_format`` is not one of :data:`OUTPUT_FORMATS`.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(
            f"output_format must be one of {OUTPUT_FORMATS}, output_format: {output_format!r}"
        )
    return output_format  # type: ignore[return-value]


def check_prompt_language(language: str) -> str:
    """Validate the language of a built-in prompt template.

    Raises:
        ValueError: if ``language`` is not one of :data:`PROMPT_LANGUAGES`.
    """
    if language not in PROMPT_LANGUAGES:
        raise ValueError(
            f"prompt_language must be one of {PROMPT_LANGUAGES}, prompt_language: {language!r}"
        )
    return language


def default_template(output_format: str, language: str = "en") -> str:
    """The prompt template (with a ``{question}`` field) of an output format, in ``language``."""
    return _TEMPLATES[check_format_name(output_format), check_prompt_language(language)]


def default_system_prompt(output_format: str, language: str = "en") -> str:
    """The system message used for the chat form of an output format, in ``language``."""
    return _SYSTEMS[check_format_name(output_format), check_prompt_language(language)]


@dataclass(frozen=True)
class Parsed:
    """A completion split by its output format.

    Attributes:
        well_formed: whether the completion follows the format exactly.
        reasoning: the chain of thought (think or reasoning block), or ``None`` if absent.
        answer: the answer block (r1-zero) or summary (r1), or ``None`` if absent.
    """

    well_formed: bool
    reasoning: str | None
    answer: str | None


def _block(text: str, start: str, end: str) -> str | None:
    i = text.find(start)
    if i < 0:
        return None
    j = text.find(end, i + len(start))
    return None if j < 0 else text[i + len(start) : j]


def parse(completion: str, output_format: str, think_prefill: bool | None = None) -> Parsed:
    """Split ``completion`` into reasoning and answer according to ``output_format``.

    Args:
        completion: the model's completion.
        output_format: ``"r1-zero"`` or ``"r1"``.
        think_prefill: whether the prompt pre-filled the opening tag; ``None`` detects it.

    Returns:
        The :class:`Parsed` completion. Parsing never raises on any ``str``.
    """
    if output_format == "r1":
        open_tag, close_tag = REASONING_START, REASONING_END
    else:
        open_tag, close_tag = THINK_START, THINK_END
    n_open, n_close = completion.count(open_tag), completion.count(close_tag)
    text = completion
    if n_open == 0 and n_close == 1 and think_prefill is not False:
        text, n_open = open_tag + completion, 1
    elif think_prefill and n_open == 0:
        text, n_open = open_tag + completion, 1

    reasoning = _block(text, open_tag, close_tag)
    if output_format == "r1":
        answer = None
        if reasoning is not None:
            answer = text[text.find(close_tag) + len(close_tag) :].strip() or None
        well_formed = (
            n_open == 1
            and n_close == 1
            and text.lstrip().startswith(open_tag)
            and bool(reasoning and reasoning.strip())
            and answer is not None
        )
        return Parsed(well_formed, reasoning, answer)

    answer = _block(text, ANSWER_START, ANSWER_END)
    well_formed = (
        n_open == 1
        and n_close == 1
        and text.count(ANSWER_START) == 1
        and text.count(ANSWER_END) == 1
        and _r1_zero_shape(text)
        and bool(answer and answer.strip())
    )
    return Parsed(well_formed, reasoning, answer)


def _r1_zero_shape(text: str) -> bool:
    """Only whitespace around ``<think>…</think>`` then ``<answer>…</answer>``.

    For a text holding each of the four tags once; one pass of ``str.find`` (linear time on
    any input, where a backtracking pattern need not be).
    """
    a = text.find(THINK_START)
    b = text.find(THINK_END, a + len(THINK_START))
    c = text.find(ANSWER_START, b + len(THINK_END))
    d = text.find(ANSWER_END, c + len(ANSWER_START))
    if min(a, b, c, d) < 0:
        return False
    gaps = (text[:a], text[b + len(THINK_END) : c], text[d + len(ANSWER_END) :])
    return all(not gap or gap.isspace() for gap in gaps)


def format_reward(completion: str, output_format: str, think_prefill: bool | None = None) -> float:
    """1.0 if ``completion`` follows ``output_format`` exactly, else 0.0."""
    return 1.0 if parse(completion, output_format, think_prefill).well_formed else 0.0


_BOXED = "\\boxed"


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced."""
    i = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if i < 0:
        return None
    j = text.find("{", i)
    if j < 0 or text[i:j].strip() not in ("\\boxed", "\\fbox"):
        return None
    depth = 0
    for k in range(j, len(text)):
        c = text[k]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[j + 1 : k]
    return None


def final_answer_text(completion: str) -> str | None:
    """The final answer a reader would grade, for tasks with plain-text answers.

    Only the part after the reasoning (after the last ``</think>`` or r1 reasoning
    delimiter) is read when there is one and it is not blank. In it, the last
    ``<answer>…</answer>`` block wins, then the last ``\\boxed{}``, then the last non-empty
    line. Returns ``None`` when nothing is left.
    """
    text = completion
    for end_tag in (REASONING_END, THINK_END):
        k = text.rfind(end_tag)
        if k >= 0 and text[k + len(end_tag) :].strip():
            text = text[k + len(end_tag) :]
            break
    i = text.rfind(ANSWER_START)
    if i >= 0:
        j = text.find(ANSWER_END, i)
        if j >= 0:
            return text[i + len(ANSWER_START) : j].strip()
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else None
