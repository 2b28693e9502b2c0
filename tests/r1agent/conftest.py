"""Fixtures shared by the r1agent tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A one-layer tiny-factory model directory (tokenizer trained locally)."""
    from r1agent.infra.tiny import build_tiny_model

    return build_tiny_model(
        tmp_path_factory.mktemp("tiny") / "m",
        hidden=32,
        layers=1,
        heads=2,
        kv_heads=1,
        intermediate=64,
    )
