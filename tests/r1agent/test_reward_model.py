from __future__ import annotations

import json
import math

import pytest
import torch

from r1agent.rewards.reward_model import bradley_terry_loss, read_preferences


def test_bradley_terry_loss_hand_values():
    rc, rr = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    loss, stats = bradley_terry_loss(rc, rr)
    # -log sigmoid(2) and -log sigmoid(0) = log 2
    expected = (math.log1p(math.exp(-2.0)) + math.log(2.0)) / 2
    torch.testing.assert_close(loss, torch.tensor(expected))
    assert stats["rm/accuracy"] == pytest.approx(0.5)
    assert stats["rm/margin"] == pytest.approx(1.0)


def test_read_preferences_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="prefs.jsonl"):
        read_preferences(tmp_path / "prefs.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_preferences(bad)


def test_shipped_preferences_load():
    from r1envs.resources import data_path

    pairs = read_preferences(data_path("general/preferences.jsonl"))
    assert len(pairs) > 50 and all(p.chosen != p.rejected for p in pairs)
