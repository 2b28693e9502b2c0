"""Declarative tasks: a YAML file names a data file, a field mapping and a verifier.

A file such as ``tasks/gsm_style.yaml``::

    id: r1/GSMStyle-v0
    description: Grade-school word problems, answers after '####'.
    data: math/gsm_style.jsonl        # absolute, relative to the YAML file, or to tasks/
    fields: {question: question, answer: answer}
    transforms: {answer: gsm8k}
    verifier: math                    # math | exact | code | "package.module:TaskClass"
    kwargs: {output_format: r1-zero}  # default gym.make kwargs (env and task alike)

becomes a Gymnasium id with :func:`register_declarative`. Every ``*.yaml`` in the shipped
``tasks/`` folder is registered at ``import r1envs``. The data is read on the first
``gym.make`` of the id (and cached per process), so importing stays fast.

Verifiers:

* ``math``: :class:`r1envs.families.math.MathTask` (equivalence of the final answer);
* ``exact``: :class:`ExactTask`, the final answer equals the gold text after case folding
  and whitespace normalisation (or one of ``aliases``);
* ``code``: ``r1envs.families.code:CodeTask`` (tests run in a sandbox);
* ``"module:Class"``: any Task class with a ``Problem`` model whose constructor takes
  ``problems=[...]``.

Every verifier class is built as ``cls(problems=problems, **task_kwargs)``; ``task_kwargs``
are the YAML's ``kwargs`` that are not env parameters plus those given to ``gym.make``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from r1envs.core import Grade, Task, validation_message
from r1envs.formats import final_answer_text
from r1envs.loaders import TRANSFORMS, load_problems
from r1envs.registry import _ID, _resolve, register_task
from r1envs.resources import data_root

#: Verifier names and the Task class (``"module:attr"``, resolved lazily) each stands for.
VERIFIERS: dict[str, str] = {
    "math": "r1envs.families.math:MathTask",
    "exact": "r1envs.declarative:ExactTask",
    "code": "r1envs.families.code:CodeTask",
}


class DeclarativeSpec(BaseModel):
    """The contents of a declarative task file."""

    model_config = ConfigDict(extra="forbid")
    id: str
    description: str = ""
    data: str | list[str] = Field(description="data file(s) or 'hf:NAME[:CONFIG]'")
    fields: dict[str, str] = Field(default_factory=dict)
    transforms: dict[str, str] = Field(default_factory=dict)
    verifier: str = "math"
    split: str = "train"
    limit: int | None = Field(default=None, ge=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _check_id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError(f"must look like 'namespace/Name-vN', got {v!r}")
        return v

    @field_validator("data")
    @classmethod
    def _check_data(cls, v: str | list[str]) -> str | list[str]:
        if not v or (isinstance(v, list) and not all(v)):
            raise ValueError("must name at least one non-empty data file")
        return v

    @field_validator("transforms")
    @classmethod
    def _check_transforms(cls, v: dict[str, str]) -> dict[str, str]:
        for target, name in v.items():
            if name not in TRANSFORMS:
                raise ValueError(
                    f"unknown transform for {target!r}: {name!r}; known: {sorted(TRANSFORMS)}"
                )
        return v

    @field_validator("verifier")
    @classmethod
    def _check_verifier(cls, v: str) -> str:
        if v not in VERIFIERS and not re.fullmatch(r"[\w.]+:[\w.]+", v):
            raise ValueError(f"must be one of {sorted(VERIFIERS)} or 'module:Class', got {v!r}")
        return v


def load_spec(path: str | Path) -> DeclarativeSpec:
    """Read and validate a declarative task file.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file and each bad field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"declarative task file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML: {err}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return DeclarativeSpec.model_validate(dict(data))
    except ValidationError as err:
        raise ValueError(f"{path}: {validation_message(err)}") from None


def resolve_data(data: str, base: Path) -> str | Path:
    """Where a spec's data file lives: ``hf:`` names as they are, absolute paths, then
    paths relative to the YAML file's folder, then relative to the shipped ``tasks/``."""
    if data.startswith("hf:"):
        return data
    path = Path(data).expanduser()
    if path.is_absolute():
        return path
    local = base / path
    return local if local.exists() else data_root() / path


class DeclarativeFactory:
    """Builds the task of a spec; the problems are loaded on the first call, then cached."""

    def __init__(self, spec: DeclarativeSpec, source: Path) -> None:
        self.spec = spec
        self.source = source
        self._problems: list[BaseModel] | None = None

    def task_class(self) -> type[Task]:
        """The verifier's Task class (imported now)."""
        target = VERIFIERS.get(self.spec.verifier, self.spec.verifier)
        try:
            cls = _resolve(target)
        except (ImportError, AttributeError) as err:
            raise ValueError(
                f"{self.source}: verifier {self.spec.verifier!r} cannot be imported "
                f"({target}): {err}"
            ) from None
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise ValueError(f"{self.source}: verifier {target!r} is not a Task class")
        return cls

    def problems(self, cls: type[Task]) -> list[BaseModel]:
        """The spec's problems, validated by ``cls.Problem`` (loaded once)."""
        if self._problems is None:
            files = [self.spec.data] if isinstance(self.spec.data, str) else self.spec.data
            loaded: list[BaseModel] = []
            for f in files:
                loaded += load_problems(
                    resolve_data(f, self.source.parent),
                    cls.Problem,
                    fields=self.spec.fields,
                    transforms=self.spec.transforms,
                    split=self.spec.split,
                )
            self._problems = loaded[: self.spec.limit] if self.spec.limit else loaded
        return self._problems

    def __call__(self, **task_kwargs: Any) -> Task:
        """Build the task (``gym.make`` calls this with the task kwargs)."""
        cls = self.task_class()
        return cls(problems=self.problems(cls), **task_kwargs)


def register_declarative(path: str | Path, *, override: bool = False) -> str:
    """Register the task described by a YAML file as a Gymnasium id.

    Args:
        path: the declarative task file.
        override: replace an existing registration of the same id.

    Returns:
        The registered id.

    Raises:
        ValueError: naming the file and field of a malformed spec, or a duplicate id.
    """
    path = Path(path).resolve()
    spec = load_spec(path)
    register_task(spec.id, DeclarativeFactory(spec, path), kwargs=spec.kwargs, override=override)
    return spec.id


def shipped_specs() -> list[Path]:
    """The declarative task files shipped in ``tasks/``."""
    root = data_root()
    return sorted([*root.glob("*.yaml"), *root.glob("*.yml")])


def register_shipped() -> list[str]:
    """Register every shipped declarative task not registered yet; returns their ids."""
    from r1envs.registry import _TASKS

    ids = []
    for path in shipped_specs():
        spec = load_spec(path)
        if spec.id not in _TASKS:
            register_task(spec.id, DeclarativeFactory(spec, path), kwargs=spec.kwargs)
            ids.append(spec.id)
    return ids


# -- the exact-match verifier ----------------------------------------------------------------


class ExactProblem(BaseModel):
    """A question whose answer is a short text matched exactly (after normalisation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_to_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def normalize_text(text: str) -> str:
    """Case-folded, whitespace collapsed, surrounding quotes and final period removed."""
    text = " ".join(text.split()).casefold()
    return text.strip().strip("\"'`").rstrip(".").strip()


class ExactTask(Task[ExactProblem]):
    """Questions graded by exact match of the final answer.

    The answer graded is :func:`r1envs.formats.final_answer_text` of the completion: the
    last ``<answer>`` block, else the last ``\\boxed{}``, else the final line. It is
    compared with ``answer`` and ``aliases`` after :func:`normalize_text`.

    Args:
        problems: the problems (dicts or :class:`ExactProblem`).
    """

    Problem = ExactProblem

    def __init__(self, problems: Sequence[Mapping[str, Any] | ExactProblem]) -> None:
        self.problems = [self.validate(p) for p in problems]
        if not self.problems:
            raise ValueError("ExactTask needs at least one problem, problems: []")

    def __len__(self) -> int:
        return len(self.problems)

    def sample(self, rng: random.Random) -> ExactProblem:
        """A problem chosen uniformly."""
        return self.problems[rng.randrange(len(self.problems))]

    def prompt(self, problem: ExactProblem) -> str:
        """The question as stated."""
        return problem.question

    def grade(
        self, completion: str, problem: ExactProblem, answer_text: str | None = None
    ) -> Grade:
        """Exact match of the normalised final answer with the gold or an alias."""
        answer = final_answer_text(completion)
        if answer is None:
            return Grade(correct=False, extracted_answer=None)
        got = normalize_text(answer)
        golds = {normalize_text(a) for a in (problem.answer, *problem.aliases)}
        return Grade(correct=got in golds, extracted_answer=answer)
