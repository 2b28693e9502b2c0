"""Loading problems from files and data sets.

Records come from JSONL, JSON (a list, or ``{"data": [...]}``; either may be gzipped),
Parquet (pyarrow), or a Hugging Face data set (``hf:NAME[:CONFIG]``, when ``datasets`` is
installed and the data set is available locally). A field mapping renames source fields to the task's schema, and
value transforms handle the common layouts:

* ``gsm8k``: the answer is the text after ``####`` (``"... #### 72"`` → ``"72"``);
* ``boxed``: the answer is the last ``\\boxed{}`` of a MATH-style solution;
* ``strip``: surrounding whitespace removed.

Example::

    problems = load_problems("gsm.jsonl", MathProblem,
                             fields={"question": "question", "answer": "answer"},
                             transforms={"answer": "gsm8k"})
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from r1envs.core import validation_message
from r1envs.formats import last_boxed

M = TypeVar("M", bound=BaseModel)


def _gsm8k(value: Any) -> str:
    text = str(value)
    if "####" not in text:
        raise ValueError(f"no '####' answer marker in {text[-80:]!r}")
    return text.rsplit("####", 1)[1].strip().replace(",", "")


def _boxed(value: Any) -> str:
    boxed = last_boxed(str(value))
    if boxed is None:
        raise ValueError(f"no \\boxed{{}} answer in {str(value)[-80:]!r}")
    return boxed.strip()


TRANSFORMS: dict[str, Callable[[Any], Any]] = {
    "gsm8k": _gsm8k,
    "boxed": _boxed,
    "strip": lambda v: str(v).strip(),
}


def _hf_split(datasets: Any, name: str, config: str | None, split: str) -> Any:
    """A split of a data set saved with ``save_to_disk`` or loadable by ``load_dataset``."""
    local = Path(name).expanduser()
    if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
        data = datasets.load_from_disk(str(local))
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise ValueError(f"hf:{name}: no split {split!r}; splits: {sorted(data)}")
            data = data[split]
        return data
    return datasets.load_dataset(name, config, split=split)


def _open_text(path: Path) -> Any:
    """A text file, read through gzip when its name ends in ``.gz``."""
    if path.suffix.lower() == ".gz":
        import gzip

        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSONL file (gzipped
    when its name ends in ``.gz``, as OpenAI's ``HumanEval.jsonl.gz`` ships).

    Raises:
        ValueError: naming the file and line of invalid JSON or a non-object line.
    """
    path = Path(path)
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: invalid JSON: {err.msg}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {record!r:.60}")
            yield lineno, record


def read_records(source: str | Path, *, split: str = "train") -> list[dict[str, Any]]:
    """Read raw records from a file or a Hugging Face data set.

    Args:
        source: a ``.jsonl``, ``.json`` (either also gzipped, ``.jsonl.gz``) or ``.parquet``
            path, or ``hf:NAME[:CONFIG]`` (a hub
            name in the local cache, a folder written by ``save_to_disk``, or a folder of
            data files that ``datasets.load_dataset`` reads).
        split: the split of a Hugging Face data set.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file and line of malformed content or an unknown format.
    """
    source_str = str(source)
    if source_str.startswith("hf:"):
        try:
            import datasets
        except ImportError:
            raise ValueError(
                f"reading {source_str!r} needs the 'datasets' package: pip install 'r1[data]'"
            ) from None
        name, _, config = source_str[3:].partition(":")
        return [dict(r) for r in _hf_split(datasets, name, config or None, split)]
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"problem file not found: {path}")
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    suffix = suffixes[-2] if suffixes[-1:] == [".gz"] and len(suffixes) == 2 else path.suffix
    suffix = suffix.lower()
    if suffix == ".jsonl":
        return [record for _, record in iter_jsonl(path)]
    if suffix == ".json":
        try:
            with _open_text(path) as fh:
                data = json.loads(fh.read())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None
        if isinstance(data, Mapping):
            data = data.get("data", data.get("problems"))
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ValueError(f"{path}: expected a list of objects (or {{'data': [...]}})")
        return data
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError(f"reading {path} needs pyarrow: pip install 'r1[data]'") from None
        return pq.read_table(path).to_pylist()
    raise ValueError(
        f"unknown problem file format {suffix!r} for {path}; use .jsonl, .json, .parquet "
        "(.jsonl.gz, .json.gz)"
    )


def _get(record: Mapping[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(dotted)
    return value


def map_record(
    record: Mapping[str, Any],
    fields: Mapping[str, str] | None = None,
    transforms: Mapping[str, str | Callable[[Any], Any]] | None = None,
) -> dict[str, Any]:
    """Rename and transform one record's fields.

    Args:
        record: the raw record.
        fields: target field → source field (dotted paths reach into nested objects);
            fields not named are copied as they are; renamed top-level fields are removed.
        transforms: target field → a :data:`TRANSFORMS` name or a callable.

    Raises:
        KeyError: naming a missing source field. ValueError: from a failing transform.
    """
    out = dict(record)
    for target, source in (fields or {}).items():
        try:
            out[target] = _get(record, source)
        except KeyError:
            raise KeyError(f"source field {source!r} (for {target!r}) missing") from None
    for source in set((fields or {}).values()) - set(fields or {}):
        out.pop(source, None)  # renamed, not duplicated
    for target, transform in (transforms or {}).items():
        fn = TRANSFORMS[transform] if isinstance(transform, str) else transform
        if target in out:
            out[target] = fn(out[target])
    return out


def fit_to_model(record: Mapping[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """Keep the fields ``model`` declares; the others go into its ``metadata`` field when it
    has one (a MATH-style ``level`` or ``type``), otherwise they are dropped."""
    known = model.model_fields
    out = {k: v for k, v in record.items() if k in known}
    extra = {k: v for k, v in record.items() if k not in known}
    if extra and "metadata" in known:
        meta = out.get("metadata")
        out["metadata"] = {**extra, **meta} if isinstance(meta, Mapping) else extra
    return out


def load_problems(
    source: str | Path | Iterable[Mapping[str, Any]],
    model: type[M],
    *,
    fields: Mapping[str, str] | None = None,
    transforms: Mapping[str, str | Callable[[Any], Any]] | None = None,
    limit: int | None = None,
    split: str = "train",
) -> list[M]:
    """Load and validate problems.

    Source fields the model does not declare go into its ``metadata`` (if it has one).

    Args:
        source: a path / ``hf:`` name (see :func:`read_records`) or records in memory.
        model: the task's pydantic problem model.
        fields: field mapping (see :func:`map_record`).
        transforms: value transforms (see :data:`TRANSFORMS`).
        limit: keep at most this many problems.
        split: the split of a Hugging Face data set.

    Raises:
        ValueError: naming the record and field of the first bad problem, or an empty source.
    """
    for name, t in (transforms or {}).items():
        if isinstance(t, str) and t not in TRANSFORMS:
            raise ValueError(f"unknown transform for {name!r}: {t!r}; known: {sorted(TRANSFORMS)}")
    if isinstance(source, (str, Path)):
        records, where = read_records(source, split=split), str(source)
    else:
        records, where = list(source), "<records>"
    problems: list[M] = []
    for i, record in enumerate(records[:limit] if limit else records):
        try:
            mapped = fit_to_model(map_record(record, fields, transforms), model)
            problems.append(model.model_validate(mapped))
        except ValidationError as err:
            raise ValueError(f"{where}: record {i}: {validation_message(err)}") from None
        except (KeyError, ValueError) as err:
            reason = err.args[0] if isinstance(err, KeyError) and err.args else err
            raise ValueError(f"{where}: record {i}: {reason}") from None
    if not problems:
        raise ValueError(f"{where}: no problems found")
    return problems
