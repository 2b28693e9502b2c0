from __future__ import annotations

import json

import pytest

from r1agent.data.rejection import EmptyDatasetError
from r1agent.data.sft import read_examples
from r1agent.recipes.distill import DistillConfig, run_distill
from r1agent.recipes.sft import SFTConfig

from .test_pipeline import oracle_generate, silent_generate


def _config(tmp_path, tiny):
    return DistillConfig(
        teacher=str(tiny),
        student=str(tiny),
        output_dir=str(tmp_path / "d"),
        prompts=8,
        samples=2,
        max_new_tokens=16,
        sft=SFTConfig(max_steps=2, batch_size=4),
        eval_n=4,
        eval_k=2,
    )


def test_distill_filters_teacher_samples_and_trains_the_student(tmp_path, tiny):
    summary = run_distill(_config(tmp_path, tiny), generate_fn=oracle_generate)
    out = tmp_path / "d"
    data = read_examples(out / "teacher_data.jsonl")
    assert len(data) == 8  # one correct, readable sample per problem (duplicates dropped)
    assert summary["filter"]["kept"] == 8 and summary["filter"]["wrong"] == 0
    assert (out / "student" / "config.json").is_file()
    assert summary["distilled"]["pass@1"] == pytest.approx(1.0)  # evaluated with the oracle too
    assert json.loads((out / "distill_report.json").read_text())["teacher"] == str(tiny)


def test_distill_with_nothing_correct_is_an_error(tmp_path, tiny):
    with pytest.raises(EmptyDatasetError, match="no correct"):
        run_distill(_config(tmp_path, tiny), generate_fn=silent_generate)
    assert not (tmp_path / "d" / "student").exists()
