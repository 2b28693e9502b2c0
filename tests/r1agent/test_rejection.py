from __future__ import annotations

import pytest

from r1agent.data.rejection import (
    EmptyDatasetError,
    build_stage3_set,
    dedup,
    has_code_block_in_cot,
    is_mixed_language,
    readable,
)
from r1agent.data.sft import Example, read_examples
from r1envs import formats

R = formats.REASONING_START
E = formats.REASONING_END


def test_code_block_in_cot_only_counts_the_reasoning():
    assert has_code_block_in_cot(f"{R} let me run ```print(1)``` {E} The answer is 1.")
    assert not has_code_block_in_cot(f"{R} 1 + 1 = 2 {E} Here: ```print(2)```")


def test_mixed_language():
    assert is_mixed_language(f"{R} first add the numbers 然后 检查 结果 答案 {E} 3")
    assert not is_mixed_language(f"{R} first add the numbers then check {E} 3")
    assert not is_mixed_language(f"{R} 47 + 18 = 65 {E} 65")  # no words: consistent


def test_readable_rejects_overlong_and_empty():
    assert readable(f"{R} 1 + 2 = 3 {E} The answer is \\boxed{{3}}.")
    assert not readable("   ")
    assert not readable(f"{R} " + "1 + 1 = 2 " * 50 + f"{E} 2", max_chars=100)


def test_dedup_normalises_whitespace():
    ex = [Example("p", "a  b"), Example("p", "a b"), Example("q", "a b")]
    assert dedup(ex) == [Example("p", "a  b"), Example("q", "a b")]


def test_empty_filtered_set_is_an_error(tmp_path):
    with pytest.raises(EmptyDatasetError, match="kept no reasoning samples"):
        build_stage3_set([], [Example("g", "a")], tmp_path / "d.jsonl")
    assert not (tmp_path / "d.jsonl").exists()
    path = build_stage3_set([Example("p", "r")], [Example("g", "a")], tmp_path / "d.jsonl")
    assert read_examples(path) == [Example("p", "r"), Example("g", "a")]
