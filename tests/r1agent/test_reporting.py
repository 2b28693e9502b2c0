"""Metrics sinks: metrics.jsonl, TensorBoard events and an offline Weights & Biases run."""

from __future__ import annotations

import struct
import sys
import time
import zlib
from pathlib import Path

import pytest

from r1agent.infra.metrics import WANDB_ID_FILE, MetricsLogger, read_jsonl, resolve_sinks

ROWS = {
    1: {"charts/reward": 0.25, "losses/kl": 0.0, "samples/completions": ["2+2 ⟶ 4", "3+3 ⟶ 7"]},
    2: {"charts/reward": 0.5, "losses/kl": 0.01, "losses/grad_norm": float("nan")},
    3: {"charts/reward": 0.75, "losses/kl": 0.02},
    4: {"charts/reward": 1.0, "losses/kl": 0.03},
}


def log_steps(logger: MetricsLogger, steps: range) -> None:
    for step in steps:
        logger.log(step, ROWS[step])


# --------------------------------------------------------------------------- sinks


def test_resolve_sinks_defaults_and_errors():
    assert resolve_sinks(None, None) == ["tensorboard"]
    assert resolve_sinks(None, True) == ["tensorboard"]
    assert resolve_sinks(None, False) == []
    assert resolve_sinks([], True) == []
    assert resolve_sinks(["wandb", "tensorboard", "wandb"], False) == ["wandb", "tensorboard"]
    with pytest.raises(ValueError, match="mlflow"):
        resolve_sinks(["tensorboard", "mlflow"], None)


def test_no_sink_writes_only_jsonl(tmp_path):
    for kwargs in ({"tensorboard": False}, {"report_to": []}):
        run = tmp_path / str(len(kwargs))
        logger = MetricsLogger(run, **kwargs)
        log_steps(logger, range(1, 3))
        logger.close()
        assert not (run / "tb").exists() and not (run / WANDB_ID_FILE).exists()
        rows = read_jsonl(run / "metrics.jsonl")
        assert [r["step"] for r in rows] == [1, 2]
        assert rows[1]["losses/grad_norm"] is None  # NaN is not valid JSON


# --------------------------------------------------------------------------- TensorBoard


def tb_scalars(tb_dir: Path, tag: str) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_tensorboard_events_and_resume(tmp_path):
    logger = MetricsLogger(tmp_path, report_to=["tensorboard"])
    log_steps(logger, range(1, 4))
    logger.close()
    assert tb_scalars(tmp_path / "tb", "charts/reward") == {1: 0.25, 2: 0.5, 3: 0.75}
    assert "losses/grad_norm" not in _tb_tags(tmp_path / "tb")  # NaN is not plotted

    logger = MetricsLogger(tmp_path, tensorboard=True, resume_step=2)  # the old keyword
    logger.log(3, {"charts/reward": -3.0})
    log_steps(logger, range(4, 5))
    logger.close()
    assert tb_scalars(tmp_path / "tb", "charts/reward") == {1: 0.25, 2: 0.5, 3: -3.0, 4: 1.0}
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]


def _tb_tags(tb_dir: Path) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return acc.Tags()["scalars"]


# --------------------------------------------------------------------------- W&B (offline)


def wandb_records(path: Path) -> list:
    """Records of a ``.wandb`` file (a LevelDB-style log of ``wandb.proto`` records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, block, buf, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        crc, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 or pos + 7 + n > len(data):  # the end, or a record still being written
            break
        chunk = data[pos + 7 : pos + 7 + n]
        assert zlib.crc32(bytes([kind]) + chunk) == crc, f"bad checksum at {pos}"
        pos += 7 + n
        buf += chunk
        if kind in (1, 4):  # a full record, or the last fragment of one
            rec = pb.Record()
            rec.ParseFromString(buf)
            records.append(rec)
            buf = b""
    return records


def finished_records(run_dir: Path, timeout: float = 30.0) -> list:
    """The records of an offline run directory once its ``exit`` record is on disk.

    ``run.finish()`` can return before W&B's service has flushed the file.
    """
    (path,) = run_dir.glob("run-*.wandb")
    deadline = time.monotonic() + timeout
    while True:
        records = wandb_records(path)
        if records and records[-1].WhichOneof("record_type") == "exit":
            return records
        assert time.monotonic() < deadline, f"{path} has no exit record after {timeout} s"
        time.sleep(0.05)


def wandb_history(run_dir: Path) -> dict[int, dict[str, str]]:
    """``{step: {key: value_json}}`` of an offline run directory's history records."""
    out = {}
    for rec in finished_records(run_dir):
        if rec.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): i.value_json for i in rec.history.item}
            out[int(items["_step"])] = items
    return out


def offline_runs(wandb_dir: Path, run_id: str) -> list[Path]:
    """Offline run directories of ``run_id``, oldest first (W&B adds ``-1`` within a second)."""
    runs = (wandb_dir / "wandb").glob("offline-run-*")
    return sorted(p for p in runs if p.name.split("-")[3] == run_id)


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """W&B in offline mode writing under ``tmp_path/wb`` (no network, no login)."""
    pytest.importorskip("wandb")
    wb = tmp_path / "wb"
    for key, value in {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(wb),
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_PROJECT": "r1-tests",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    return wb


def test_wandb_offline_run_holds_history_and_config(tmp_path, wandb_offline):
    run_dir = tmp_path / "run"
    logger = MetricsLogger(
        run_dir, report_to=["wandb"], run_name="toy", config={"lr": 1e-3, "group_size": 4}
    )
    log_steps(logger, range(1, 4))
    logger.close()
    run_id = (run_dir / WANDB_ID_FILE).read_text().strip()
    (offline,) = offline_runs(wandb_offline, run_id)
    hist = wandb_history(offline)
    assert sorted(hist) == [1, 2, 3]
    assert [float(hist[s]["charts/reward"]) for s in (1, 2, 3)] == [0.25, 0.5, 0.75]
    assert "losses/grad_norm" not in hist[2]  # NaN is skipped, not sent
    assert hist[1]["samples/completions/_type"] == '"table-file"'
    table = offline / "files" / hist[1]["samples/completions/path"].strip('"')
    assert "3+3 ⟶ 7" in table.read_text(encoding="utf-8")
    (run,) = [r.run for r in finished_records(offline) if r.HasField("run")]
    assert (run.run_id, run.project, run.display_name) == (run_id, "r1-tests", "toy")
    config = {u.key: u.value_json for u in run.config.update}
    assert config["lr"] == "0.001" and config["group_size"] == "4"


def test_wandb_resume_continues_the_run_without_repeating_steps(tmp_path, wandb_offline):
    run_dir = tmp_path / "run"
    logger = MetricsLogger(run_dir, report_to=["wandb", "tensorboard"])
    log_steps(logger, range(1, 4))  # steps 1-3 logged, checkpoint at 2, then a crash
    logger.close()
    run_id = (run_dir / WANDB_ID_FILE).read_text().strip()

    logger = MetricsLogger(run_dir, report_to=["wandb", "tensorboard"], resume_step=2)
    log_steps(logger, range(3, 5))
    logger.close()
    assert (run_dir / WANDB_ID_FILE).read_text().strip() == run_id
    first, second = offline_runs(wandb_offline, run_id)
    assert sorted(wandb_history(first)) == [1, 2, 3]
    assert sorted(wandb_history(second)) == [4]  # step 3 was sent by the first process
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2, 3, 4]

    logger = MetricsLogger(run_dir, report_to=["wandb"], resume_step=0)  # a fresh run
    log_steps(logger, range(1, 2))
    logger.close()
    new_id = (run_dir / WANDB_ID_FILE).read_text().strip()
    assert new_id != run_id
    assert sorted(wandb_history(offline_runs(wandb_offline, new_id)[0])) == [1]


def test_wandb_missing_package_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(ImportError, match=r"report_to: wandb.*pip install wandb"):
        MetricsLogger(tmp_path, report_to=["tensorboard", "wandb"])
