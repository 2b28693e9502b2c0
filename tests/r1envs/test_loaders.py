from __future__ import annotations

import json

import pytest

from r1envs.families.math import MathProblem
from r1envs.loaders import TRANSFORMS, load_problems, map_record, read_records
from r1envs.resources import data_path

GSM = [
    {"question": "Two apples and three apples?", "answer": "2 + 3 = 5\n#### 5"},
    {"question": "A big sum?", "answer": "It is 1,250.\n#### 1,250"},
]
MATH = [
    {"problem": "Half of one?", "solution": "It is $\\boxed{\\frac{1}{2}}$.", "level": "Level 1"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_transforms():
    assert TRANSFORMS["gsm8k"]("work\n#### 1,234") == "1234"
    assert TRANSFORMS["boxed"]("so $\\boxed{1}$ then $\\boxed{\\frac{a}{b}}$") == "\\frac{a}{b}"
    assert TRANSFORMS["strip"]("  7 \n") == "7"
    with pytest.raises(ValueError, match="####"):
        TRANSFORMS["gsm8k"]("no marker")
    with pytest.raises(ValueError, match="boxed"):
        TRANSFORMS["boxed"]("no box")


def test_jsonl_gsm8k_layout(tmp_path):
    path = write_jsonl(tmp_path / "gsm.jsonl", GSM)
    probs = load_problems(path, MathProblem, transforms={"answer": "gsm8k"})
    assert [p.answer for p in probs] == ["5", "1250"]
    assert probs[0].question == "Two apples and three apples?"


def test_json_math_layout_mapping_and_metadata(tmp_path):
    path = tmp_path / "math.json"
    path.write_text(json.dumps({"data": MATH}), encoding="utf-8")
    probs = load_problems(
        path,
        MathProblem,
        fields={"question": "problem", "answer": "solution"},
        transforms={"answer": "boxed"},
    )
    assert probs[0].answer == "\\frac{1}{2}"
    assert probs[0].question == "Half of one?"
    # unknown source fields land in metadata, renamed ones are not duplicated there
    assert probs[0].metadata == {"level": "Level 1"}


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist(GSM), path)
    assert read_records(path) == GSM
    probs = load_problems(path, MathProblem, transforms={"answer": "gsm8k"}, limit=1)
    assert [p.answer for p in probs] == ["5"]


def test_nested_field_mapping():
    rec = {"q": {"text": "Why?"}, "golds": ["4", "5"]}
    out = map_record(rec, {"question": "q.text", "answer": "golds.1"})
    assert out["question"] == "Why?" and out["answer"] == "5"
    with pytest.raises(KeyError, match="q.missing"):
        map_record(rec, {"question": "q.missing"})


def test_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n{not json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: invalid JSON"):
        read_records(path)


def test_error_names_record_and_field(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"question": "a", "answer": "1"}, {"question": ""}])
    with pytest.raises(ValueError, match=r"x\.jsonl: record 1: .*question") as err:
        load_problems(path, MathProblem)
    assert "answer" in str(err.value)
    with pytest.raises(ValueError, match=r"record 0: source field 'prob'"):
        load_problems(path, MathProblem, fields={"question": "prob"})
    with pytest.raises(ValueError, match="record 0: no '####'"):
        load_problems(path, MathProblem, transforms={"answer": "gsm8k"})
    with pytest.raises(ValueError, match="unknown transform"):
        load_problems(path, MathProblem, transforms={"answer": "nope"})


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.jsonl"):
        read_records(tmp_path / "nothere.jsonl")
    (tmp_path / "a.csv").write_text("q,a\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown problem file format '.csv'"):
        read_records(tmp_path / "a.csv")
    write_jsonl(tmp_path / "empty.jsonl", [])
    with pytest.raises(ValueError, match="no problems"):
        load_problems(tmp_path / "empty.jsonl", MathProblem)


def test_hf_save_to_disk_and_local_json_builder(tmp_path):
    datasets = pytest.importorskip("datasets")
    saved = tmp_path / "saved"
    datasets.DatasetDict({"test": datasets.Dataset.from_list(GSM)}).save_to_disk(str(saved))
    probs = load_problems(f"hf:{saved}", MathProblem, transforms={"answer": "gsm8k"}, split="test")
    assert [p.answer for p in probs] == ["5", "1250"]
    with pytest.raises(ValueError, match="no split 'train'"):
        read_records(f"hf:{saved}")
    single = tmp_path / "single"
    datasets.Dataset.from_list(MATH).save_to_disk(str(single))
    assert read_records(f"hf:{single}")[0]["level"] == "Level 1"
    folder = tmp_path / "jsonfolder"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", GSM)
    recs = read_records(f"hf:{folder}")
    assert [r["question"] for r in recs] == [r["question"] for r in GSM]


@pytest.mark.parametrize(
    ("name", "transform", "fields"),
    [
        ("math/problems.jsonl", None, None),
        ("math/gsm_style.jsonl", "gsm8k", None),
        ("math/math_style.jsonl", "boxed", {"question": "problem", "answer": "solution"}),
    ],
)
def test_shipped_sets_load(name, transform, fields):
    probs = load_problems(
        data_path(name),
        MathProblem,
        fields=fields,
        transforms={"answer": transform} if transform else None,
    )
    assert len(probs) >= 30
    assert len({p.question for p in probs}) == len(probs)


def test_shipped_general_and_preference_data():
    from r1envs.loaders import read_records

    general = read_records(data_path("general/general.jsonl"))
    prefs = read_records(data_path("general/preferences.jsonl"))
    assert len(general) >= 120 and len(prefs) >= 150
    assert all(set(r) == {"prompt", "answer"} and r["prompt"] and r["answer"] for r in general)
    assert all(set(r) == {"prompt", "chosen", "rejected"} for r in prefs)
    assert all(r["chosen"] != r["rejected"] for r in prefs)
    assert max(len(r["answer"]) for r in general) < 400  # short: a tiny model trains on them


def test_shipped_math_golds_verify_against_themselves():
    math_verifier = pytest.importorskip("r1envs.verifiers.math")
    probs = load_problems(data_path("math/problems.jsonl"), MathProblem)
    probs += load_problems(
        data_path("math/gsm_style.jsonl"), MathProblem, transforms={"answer": "gsm8k"}
    )
    probs += load_problems(
        data_path("math/math_style.jsonl"),
        MathProblem,
        fields={"question": "problem", "answer": "solution"},
        transforms={"answer": "boxed"},
    )
    unparsed = [
        p.answer for p in probs if not math_verifier.verify(f"So \\boxed{{{p.answer}}}.", p.answer)
    ]
    assert unparsed == []
    # and a neighbour's answer is not accepted
    wrong = [
        (a.answer, b.answer)
        for a, b in zip(probs, probs[1:], strict=False)
        if a.answer != b.answer and math_verifier.verify(f"\\boxed{{{b.answer}}}", a.answer)
    ]
    assert wrong == []
