"""Math answer verification: extract the final answer, decide equivalence with the gold.

Usage::

    from r1envs.verifiers.math import check, verify
    verify(r"... so the answer is $\\boxed{\\frac{1}{2}}$.", "0.5")      # True
    check("<think>...</think> The answer is 12.", "$12$").extracted   # '12'

Design:

* **Extraction** (:mod:`._math_extract`, :mod:`._math_prose`): the last explicit
  final-answer marker (``\\boxed{}``, ``<answer>``, "the answer is", "Final Answer:",
  ``#### n``, ``答案：``, ``Réponse :``, ``Ответ:``...); without one, and only when
  ``strict=False``, the answer stated in the final sentence, in any language ("So she pays
  45 dollars in all.", "所以一共需要 45 元。"). Never "any number in the text". Several
  boxes in the final statement form a multi-part answer, which is right only if the gold
  has those parts (else it is answer spraying). For a choice gold without a marker, the
  letter the prose settles on ("It can't be A, so it's C", "C。不是 A", a final ``(C)``).
* **Structure** (:mod:`._math_struct`): tuples, intervals, sets, lists, unions, matrices,
  equations, inequalities, choice letters, words.
* **Equivalence** (:mod:`._math_compare`): rationals exactly with ``fractions.Fraction`` in
  this process (a plain number takes a few microseconds); everything symbolic goes to
  sympy in a helper process (:mod:`._math_worker`) started with ``subprocess`` and talked
  to over pipes. A late reply gets the helper killed and restarted (one still importing sympy
  is kept and its late reply discarded), so the time bound
  holds in any thread and in daemonic worker processes (no ``signal.alarm``). Absurd inputs
  (exponent towers, huge factorials, deep nesting, megabytes of text) are refused before
  anything evaluates them: they are wrong answers, not verifier errors.
* **Numbers**: exact comparison; a decimal matches an exact value only by the rounding
  rule of :mod:`._math_compare`, the same whichever side is the gold (5 significant
  digits, within one unit of the last: ``0.33333`` and ``1/3`` match both ways; ``0.333``
  and ``1/3``, ``7.78`` and ``70/9`` do not, either way; ``0.460`` is not ``0.5``);
  percent ``50\\%`` matches ``50``, ``0.5`` and ``1/2``; a decimal comma (``3,14``) is
  read as a point against a decimal when it cannot separate thousands.

Equivalence policy, in short: bare lists (``1, 2``) and sets are order-insensitive, tuples
and intervals are ordered and their brackets must match; ``a \\pm b`` is the list of both
values; an equation equals another when one is a non-zero multiple of the other, an
inequality when one is a positive multiple; answers that denote sets of reals (intervals,
unions, one-variable inequalities, set-builder notation, "no solution" / ``\\emptyset``) are
compared as sets (:mod:`._math_sets`): ``|x| \\geq 1`` equals ``(-\\infty,-1]\\cup[1,\\infty)``;
``x = 3`` answers a gold ``3``; units, ``\\text{}`` annotations after a value and degree
signs are ignored (``30^\\circ`` is ``30``), and an answer that states its angle unit is
converted (``45^\\circ`` is ``\\pi/4``, :mod:`._math_angles`); words compare
case-insensitively; a choice letter matches ``B``, ``(B)``, ``\\text{(B)}``,
``\\mathcal{B}`` or ``B) 12``, and a gold ``(C) Paris`` also accepts ``Paris``. Labels on
either side name the quantity and are dropped: ``AB = 5``, ``|AB| = 1``,
``V_1 : V_2 = 3 : 4``, ``\\frac{NO}{BO} = \\frac{1}{\\sqrt6}`` (not an equation such as
``x + y = 2``); ``x = 2, y = 3`` is the point ``(2, 3)`` and ``p=2, q=3; p=3, q=2`` the
solutions ``(2, 3), (3, 2)``; ``0 < f(x) < 1`` is the interval ``(0, 1)``; a solution list
is compared without its repeats; a gold of several boxes (``\\boxed{1} and \\boxed{-2}``)
equals one box holding the same values; ``a \\approx d`` matches a gold equal to ``a`` or
to ``d``.

``MathResult.error`` is set only when the verifier itself failed (its time budget ran out
in the helper process, or the helper could not be started) — never for a wrong answer.
"""

from __future__ import annotations

import ast
import atexit
import os
import pickle
import re
import select
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from r1envs.verifiers._math_angles import angles_equal
from r1envs.verifiers._math_compare import equal
from r1envs.verifiers._math_extract import (
    boxes,
    choice_in_text,
    clean_text,
    extract_parts,
    joins_parts,
    response_region,
)
from r1envs.verifiers._math_latex import MAX_EXPR_CHARS
from r1envs.verifiers._math_normalize import normalize
from r1envs.verifiers._math_prose import letter_in_prose
from r1envs.verifiers._math_sets import real_set, set_verdict
from r1envs.verifiers._math_struct import Node, structure

__all__ = ["MathResult", "check", "verify", "extract_answer", "parse_gold", "shutdown_workers"]

MAX_WORKERS = 4
STARTUP_GRACE_S = 60.0
"""A helper that is still starting (importing sympy) is kept, not killed, on a timeout."""


@dataclass(frozen=True)
class MathResult:
    """The verdict on one completion.

    Attributes:
        correct: whether the final answer is equivalent to the gold.
        extracted: the answer text that was graded (parts joined by ``", "``), or ``None``.
        error: set only when the verifier itself failed (e.g. its time budget ran out).
    """

    correct: bool
    extracted: str | None
    error: str | None = None


class VerifierTimeout(Exception):
    """The symbolic helper did not answer within the time budget."""


class VerifierUnavailable(Exception):
    """The symbolic helper process could not be started or died."""


# --------------------------------------------------------------------------- helper pool


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Starts the helper without running r1envs/__init__ (which imports gymnasium): the helper
# only needs the verifier modules, and starts twice as fast.
_BOOTSTRAP = (
    "import sys, types\n"
    "root = sys.argv[1]\n"
    "for name, path in (('r1envs', root), ('r1envs.verifiers', root + '/verifiers')):\n"
    "    module = types.ModuleType(name)\n"
    "    module.__path__ = [path]\n"
    "    sys.modules[name] = module\n"
    "from r1envs.verifiers._math_worker import main\n"
    "main()\n"
)


def _wait_readable(fd: int, timeout: float) -> bool:
    """Wait until ``fd`` is readable; ``poll`` works for any fd number (``select`` stops at 1024)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        return bool(poller.poll(max(0.0, timeout) * 1000.0))
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready)


class _Worker:
    """One helper process speaking the length-prefixed pickle protocol.

    Replies are read into a buffer, so a reply that arrives after its caller gave up is
    still consumed in order by the next caller (``pending`` counts them).
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, _PACKAGE_DIR],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self.buf = bytearray()
        self.pending = 0
        self.ready = False
        self.started = time.monotonic()

    @property
    def starting(self) -> bool:
        """Still importing sympy (never answered yet, started less than a grace period ago)."""
        return not self.ready and time.monotonic() - self.started < STARTUP_GRACE_S

    def _reply(self, deadline: float) -> tuple[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            if len(self.buf) >= 4:
                size = struct.unpack("<I", self.buf[:4])[0]
                if len(self.buf) >= 4 + size:
                    body = bytes(self.buf[4 : 4 + size])
                    del self.buf[: 4 + size]
                    self.pending -= 1
                    self.ready = True
                    return pickle.loads(body)
            left = deadline - time.monotonic()
            if left <= 0:
                raise VerifierTimeout
            if not _wait_readable(fd, left):
                raise VerifierTimeout
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise VerifierUnavailable("math helper process exited")
            self.buf += chunk

    def call(self, request: tuple[Any, ...], deadline: float) -> tuple[str, Any]:
        assert self.proc.stdin is not None
        while self.pending:  # replies to earlier calls that timed out while it started
            self._reply(deadline)
        data = pickle.dumps(request)
        try:
            self.proc.stdin.write(struct.pack("<I", len(data)) + data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise VerifierUnavailable(f"math helper process: {exc}") from exc
        self.pending += 1
        return self._reply(deadline)

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=1.0)
        except (OSError, subprocess.TimeoutExpired):
            pass


class _Pool:
    """Up to ``MAX_WORKERS`` helpers shared by the threads of one process."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.idle: list[_Worker] = []
        self.total = 0

    def acquire(self, deadline: float) -> _Worker:
        with self.cond:
            while not self.idle and self.total >= MAX_WORKERS:
                left = deadline - time.monotonic()
                if left <= 0 or not self.cond.wait(left):
                    raise VerifierTimeout
            if self.idle:
                return self.idle.pop()
            self.total += 1
        try:
            return _Worker()
        except OSError as exc:
            with self.cond:
                self.total -= 1
            raise VerifierUnavailable(f"cannot start the math helper: {exc}") from exc

    def release(self, worker: _Worker, healthy: bool) -> None:
        if not healthy:
            worker.kill()
        with self.cond:
            if healthy:
                self.idle.append(worker)
            else:
                self.total -= 1
            self.cond.notify()

    def broadcast(self, request: tuple[Any, ...], timeout: float = 5.0) -> None:
        """Send ``request`` to every idle helper (e.g. to clear their caches)."""
        with self.cond:
            workers, self.idle = self.idle, []
        for w in workers:
            ok = True
            try:
                w.call(request, time.monotonic() + timeout)
            except (VerifierTimeout, VerifierUnavailable):
                ok = False
            self.release(w, ok)

    def close(self) -> None:
        with self.cond:
            workers, self.idle = self.idle, []
            self.total -= len(workers)
        for w in workers:
            w.kill()


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _get_pool() -> _Pool:
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():  # a forked child builds its own
            _pool = _Pool()
        return _pool


def shutdown_workers() -> None:
    """Stop the helper processes of this process (they restart on demand)."""
    with _pool_lock:
        pool = _pool
    if pool is not None and pool.pid == os.getpid():
        pool.close()


atexit.register(shutdown_workers)


class _Symbolic:
    """The ``symbolic`` callback of the comparison, bounded by one deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.cache: dict[bytes, bool | None] = {}

    def __call__(self, kind: str, pred: Any, gold: Any) -> bool:
        return bool(self.decide(kind, pred, gold))

    def decide(self, kind: str, pred: Any, gold: Any) -> bool | None:
        """The helper's verdict, or ``None`` when it could not decide (e.g. sympy failed)."""
        key = pickle.dumps((kind, pred, gold))
        if key in self.cache:
            return self.cache[key]
        pool = _get_pool()
        worker = pool.acquire(self.deadline)
        healthy = False
        try:
            status, value = worker.call((kind, pred, gold), self.deadline)
            healthy = True
        except VerifierTimeout:
            healthy = worker.starting  # slow start-up: keep it; a hung computation: kill it
            raise
        finally:
            pool.release(worker, healthy)
        result = bool(value) if status == "ok" else None
        self.cache[key] = result
        return result


# --------------------------------------------------------------------------- answers


_GOLD_MARKER_RE = re.compile(r"(?i)####|answer\s*(?:is|:)|final answer|<answer>")


_LIST_GOLD_RE = re.compile(r"""^\[\s*(?:'[^']*'|"[^"]*")(?:\s*,\s*(?:'[^']*'|"[^"]*"))*\s*\]$""")


def _gold_text(gold: str) -> list[str]:
    g = clean_text(gold).strip()
    if _LIST_GOLD_RE.match(g):  # a list written as JSON / Python: ["3", "5"]
        try:
            items = ast.literal_eval(g)
        except (ValueError, SyntaxError):
            items = None
        if isinstance(items, list) and items:
            return [str(x) for x in items]
    bx = boxes(g)
    if bx:
        return [b[2] for b in bx] if len(bx) > 1 and _all_adjacent(g, bx) else [bx[-1][2]]
    if _GOLD_MARKER_RE.search(g) or len(g) > 200:
        parts = extract_parts(g, strict=len(g) <= 200)
        if parts:
            return parts
    return [g]


_GAP_WORDS_RE = re.compile(r"[\s$,;]|\\q?quad|\band\b|\bor\b|\\text\{[^{}]*\}")


def _all_adjacent(text: str, bx: list[tuple[int, int, str]]) -> bool:
    gaps = [text[a[1] : b[0]] for a, b in zip(bx, bx[1:], strict=False)]
    return all(len(_GAP_WORDS_RE.sub("", gap)) <= 3 or joins_parts(gap) for gap in gaps)


_GOLD_CHOICE_RE = re.compile(r"^\(?([A-H])(?:\)|[.:])\s")


@lru_cache(maxsize=16384)
def parse_gold(gold: str) -> Node:
    """The structure of a gold answer (cached: golds repeat across a group of samples)."""
    parts = _gold_text(gold)
    if len(parts) == 1:
        text = normalize(parts[0]) + " "
        m = _GOLD_CHOICE_RE.match(text)
        if m is not None:  # ("choice", letter, the option's text)
            return ("choice", m.group(1), text[m.end() :].strip())
    return _structure_of(parts)


@lru_cache(maxsize=8192)  # answers repeat less than golds; keep memory bounded
def _structure_one(text: str) -> Node:
    return structure(normalize(text))


@lru_cache(maxsize=8192)
def _normalized(text: str) -> str:
    return normalize(text).replace(" ", "")


@lru_cache(maxsize=16384)
def _single_gold(gold: str) -> str | None:
    parts = _gold_text(gold)
    return parts[0] if len(parts) == 1 else None


def _structure_of(parts: list[str]) -> Node:
    if len(parts) == 1:
        return _structure_one(parts[0])
    return ("list", [_structure_one(p) for p in parts])


_CHOICE_LEAD_RE = re.compile(r"^\(?([A-H])(?:\)|[.:]|\s*$)")


def _choice_letter(text: str) -> str | None:
    """The option letter an answer starts with: ``B) 12``, ``(C) x``, ``D.``."""
    m = _CHOICE_LEAD_RE.match(normalize(text))
    return m.group(1) if m else None


_DECIMAL_COMMA_RE = re.compile(r"^\s*\$?\s*([-+]?)(\d+),(\d+)\s*\$?\s*$")


def decimal_comma(text: str) -> str | None:
    """``3,14`` -> ``3.14`` when the comma cannot separate thousands, else ``None``.

    It cannot when the group after it is not three digits (``3,14``, ``1000,99``), or the
    number before it is 0 or has more than three digits (``0,111``, ``1000,999``).
    """
    m = _DECIMAL_COMMA_RE.match(text)
    if m is None:
        return None
    sign, whole, frac = m.groups()
    if len(frac) != 3 or whole == "0" or len(whole) > 3 or whole.startswith("0"):
        return f"{sign}{whole}.{frac}"
    return None


def _decimal_comma_equal(part: str, gold_one: str, pred: Node, g: Node, symbolic: Any) -> bool:
    """The answer or the gold read with a decimal comma (``3,14`` for 3.14).

    Only against a decimal on the other side: ``1,2`` stays a list next to an integer.
    """
    alt = decimal_comma(part) if "." in gold_one else None
    if alt is not None and equal(_structure_one(alt), g, symbolic):
        return True
    alt = decimal_comma(gold_one) if "." in part else None
    return alt is not None and equal(pred, _structure_one(alt), symbolic)


def _unmarked_choice(completion: str, g: Node) -> MathResult | None:
    """A choice gold and a response without an explicit marker: the letter its prose settles on.

    "option C", "It can't be A, so it's C", "C。不是 A", a final ``(C)``; ``None`` when the
    response has a marker (the marked answer is graded) or names no letter.
    """
    if extract_parts(completion, strict=True):
        return None
    letter = letter_in_prose(response_region(clean_text(completion)))
    if letter is None:
        letter = choice_in_text(completion)
    if letter is None and len(completion.strip()) <= 200:
        letter = _choice_letter(completion.strip())
    return None if letter is None else MathResult(letter == g[1], letter)


def extract_answer(completion: str, *, strict: bool = False) -> str | None:
    """The final answer text of ``completion`` (parts joined by ``", "``), or ``None``.

    Args:
        completion: the model's completion (may include a think block).
        strict: require an explicit final-answer marker.
    """
    try:
        parts = extract_parts(completion, strict=strict)
    except (RecursionError, ValueError):
        return None
    return None if not parts else ", ".join(parts)


def _sprayed(parts: list[str], gold: Node, symbolic: _Symbolic) -> Node | None:
    """The structure of several final answers, or ``None`` if they cannot all be right."""
    nodes = [_structure_one(p) for p in parts]
    gold_items = gold[1] if gold[0] in ("list", "set") else gold[3] if gold[0] == "tuple" else None
    if gold_items is not None and len(gold_items) == len(nodes):
        return ("list", nodes)
    first = nodes[0]
    if all(equal(n, first, symbolic) for n in nodes[1:]):
        return first  # the same answer boxed twice
    return None


def check(completion: str, gold: str, *, strict: bool = False, timeout: float = 5.0) -> MathResult:
    """Extract the final answer of ``completion`` and compare it with ``gold``.

    Args:
        completion: the model's completion.
        gold: the reference answer (plain, ``$...$``, ``\\boxed{}``, a list, an equation,
            a choice such as ``\\text{(B)}``, or a whole reference solution).
        strict: require an explicit final-answer marker (no final-sentence fallback).
        timeout: wall-clock budget in seconds for the whole check.

    Returns:
        A :class:`MathResult`; never raises on any ``str`` input.
    """
    deadline = time.monotonic() + max(0.0, timeout)
    extracted: str | None = None
    if not isinstance(completion, str):
        return MathResult(False, None)
    if isinstance(gold, (list, tuple)):
        gold = ", ".join(str(g) for g in gold)  # several answers: all of them are wanted
    elif not isinstance(gold, str):
        gold = str(gold)  # numbers from JSON files
    try:
        g = parse_gold(gold)
        if g[0] == "choice" and not strict:
            verdict = _unmarked_choice(completion, g)
            if verdict is not None:
                return verdict
        parts = extract_parts(completion, strict=strict)
        if not parts:
            return MathResult(False, None)
        extracted = ", ".join(parts)
        if len(extracted) > MAX_EXPR_CHARS:
            return MathResult(False, extracted[:200])
        symbolic = _Symbolic(deadline)
        if len(parts) > 1:
            pred = _sprayed(parts, g, symbolic)
            if pred is None:
                return MathResult(False, extracted)
        else:
            gold_one = _single_gold(gold)
            if gold_one is not None:
                if _normalized(parts[0]) == _normalized(gold_one):
                    return MathResult(True, extracted)
                as_sets = set_verdict(parts[0], gold_one, symbolic.decide)  # x > 1 vs (1, \infty)
                if as_sets is not None:
                    return MathResult(as_sets, extracted)
            pred = _structure_one(parts[0])
        if g[0] == "choice" and pred[0] != "choice":
            letter = _choice_letter(parts[0])
            if letter is None and len(completion.strip()) <= 200:
                letter = _choice_letter(completion.strip())
            if letter is None:
                letter = choice_in_text(completion)
            if letter is not None:
                pred = ("choice", letter)
            elif g[2]:
                g = _structure_one(g[2])  # the option's text: "Paris" for "(C) Paris"
        ok = equal(pred, g, symbolic)
        if not ok and len(parts) == 1 and (gold_one := _single_gold(gold)) is not None:
            ok = angles_equal(parts[0], gold_one, pred, g, symbolic)  # 45^\circ vs \pi/4
            if not ok:
                ok = _decimal_comma_equal(parts[0], gold_one, pred, g, symbolic)
        return MathResult(bool(ok), extracted)
    except VerifierTimeout:
        return MathResult(False, extracted, f"math verifier timed out after {timeout:g} s")
    except VerifierUnavailable as exc:
        return MathResult(False, extracted, f"math verifier failed: {exc}")
    except (RecursionError, ArithmeticError, MemoryError):
        return MathResult(False, extracted)
    except Exception as exc:  # noqa: BLE001 - a verifier bug must not crash a training step
        return MathResult(False, extracted, f"math verifier failed: {type(exc).__name__}: {exc}")


def verify(completion: str, gold: str, *, strict: bool = False, timeout: float = 5.0) -> bool:
    """Whether the final answer of ``completion`` is equivalent to ``gold``.

    Args:
        completion: the model's completion.
        gold: the reference answer.
        strict: require an explicit final-answer marker.
        timeout: wall-clock budget in seconds.
    """
    return check(completion, gold, strict=strict, timeout=timeout).correct


def clear_caches() -> None:
    """Forget parsed golds and answers, and the helpers' sympy caches (for benchmarks)."""
    with _pool_lock:
        pool = _pool
    if pool is not None and pool.pid == os.getpid():
        pool.broadcast(("clear_cache", None, None))
    parse_gold.cache_clear()
    _structure_one.cache_clear()
    _normalized.cache_clear()
    _single_gold.cache_clear()
    real_set.cache_clear()
