"""A Gymnasium text space that accepts any Unicode string.

Gymnasium's ``Text`` space checks membership against a fixed charset (alphanumeric by
default). Prompts and completions are arbitrary Unicode, so ``UnicodeText`` keeps the
``Text`` API (``sample``, ``contains``, seeding) but accepts every ``str`` up to
``max_length`` characters. ``sample()`` draws short strings from a mixed charset (ASCII,
punctuation, LaTeX symbols, CJK, emoji) so random-action checks exercise real text.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from gymnasium.spaces import Text

SAMPLE_CHARSET = (
    string.ascii_letters
    + string.digits
    + string.punctuation
    + " \n\t"
    + "αβγπ∑√∞≤≥±×÷"
    + "你好世界数学答案思考"
    + "éüñçøåß"
    + "😀🚀"
)


class UnicodeText(Text):
    """A ``Text`` space whose ``contains`` accepts any Unicode string within the length bounds.

    Args:
        max_length: The longest string the space contains.
        min_length: The shortest string the space contains.
        sample_max_length: The longest string ``sample()`` draws (keeps random actions cheap).
        seed: Optional seed for the space's RNG.
    """

    def __init__(
        self,
        max_length: int,
        *,
        min_length: int = 0,
        sample_max_length: int = 256,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(
            max_length=max_length, min_length=min_length, charset=SAMPLE_CHARSET, seed=seed
        )
        self.sample_max_length = min(sample_max_length, max_length)

    def contains(self, x: Any) -> bool:
        """Whether ``x`` is a ``str`` whose length lies within the bounds."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random string of at most ``sample_max_length`` characters."""
        if mask is not None or probability is not None:
            return super().sample(mask=mask, probability=probability)
        length = int(self.np_random.integers(self.min_length, self.sample_max_length + 1))
        idx = self.np_random.integers(0, len(SAMPLE_CHARSET), size=length)
        return "".join(SAMPLE_CHARSET[i] for i in idx)

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, UnicodeText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )

    __hash__ = Text.__hash__


# -- vector envs: AsyncVectorEnv's shared memory --------------------------------------------
# Gymnasium stores a Text observation in shared memory as charset indices, which fails for
# characters outside the charset. UnicodeText stores code points instead (0 = padding), and
# reads and writes them with numpy rather than a Python loop over max_length.


def _create_unicode_shared_memory(space: UnicodeText, n: int = 1, ctx: Any = None) -> Any:
    import multiprocessing as mp

    ctx = ctx or mp
    return ctx.Array(np.dtype(np.uint32).char, n * space.max_length)


def _write_unicode_shared_memory(
    space: UnicodeText, index: int, values: str, shared_memory: Any
) -> None:
    size = space.max_length
    dest = np.frombuffer(shared_memory.get_obj(), dtype=np.uint32)[
        index * size : (index + 1) * size
    ]
    codes = np.frombuffer(values[:size].encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    dest[: len(codes)] = codes + 1
    dest[len(codes) :] = 0


def _read_unicode_shared_memory(space: UnicodeText, shared_memory: Any, n: int = 1) -> tuple:
    data = np.frombuffer(shared_memory.get_obj(), dtype=np.uint32).reshape((n, space.max_length))
    out = []
    for row in data:
        end = int(np.argmin(row)) if row[-1] == 0 else len(row)
        out.append((row[:end] - 1).astype("<u4").tobytes().decode("utf-32-le", "surrogatepass"))
    return tuple(out)


def _register_vector_support() -> None:
    from gymnasium.vector.utils import shared_memory as sm

    sm.create_shared_memory.register(UnicodeText)(_create_unicode_shared_memory)
    sm.write_to_shared_memory.register(UnicodeText)(_write_unicode_shared_memory)
    sm.read_from_shared_memory.register(UnicodeText)(_read_unicode_shared_memory)


_register_vector_support()
