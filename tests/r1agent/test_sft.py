from __future__ import annotations

import json

import pytest
import torch

from r1agent.data.sft import (
    IGNORE_INDEX,
    Example,
    build_rows,
    collate,
    pack,
    read_examples,
    shared_prefix,
    split_by_prefix,
)
from r1agent.recipes.sft import batch_loss, lr_at, response_loss


def test_pack_first_fit_decreasing():
    rows = pack([5, 3, 4, 2, 6], 8)
    assert sorted(i for r in rows for i in r) == [0, 1, 2, 3, 4]
    for r in rows:
        assert sum([5, 3, 4, 2, 6][i] for i in r) <= 8
    assert len(rows) == 3  # 6+2, 5+3, 4


def test_collate_block_diagonal_mask_and_positions():
    b = collate(
        [[([1, 2], [IGNORE_INDEX, 2]), ([3, 4, 5], [IGNORE_INDEX, 4, 5])], [([6], [6])]], pad_id=0
    )
    assert b["input_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 0, 0, 0, 0]]
    assert b["position_ids"].tolist() == [[0, 1, 0, 1, 2], [0, 0, 0, 0, 0]]
    m = b["attention_mask"][0, 0]
    assert m[3].tolist() == [False, False, True, True, False]  # 2nd segment sees itself only
    assert m[1].tolist() == [True, True, False, False, False]
    assert b["labels"][1].tolist() == [6, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]


def small_model(layers: int = 1) -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    return Qwen2ForCausalLM(cfg).eval()


def test_packed_row_computes_what_each_example_computes_alone():
    model = small_model()
    a, c = [1, 2, 3], [4, 5, 6, 7]
    b = collate([[(a, a), (c, c)]], pad_id=0)
    packed = model(
        input_ids=b["input_ids"], attention_mask=b["attention_mask"], position_ids=b["position_ids"]
    ).logits
    alone = model(input_ids=torch.tensor([c])).logits
    torch.testing.assert_close(packed[:, 3:], alone, atol=1e-5, rtol=1e-4)


def example(prompt: list[int], response: list[int]) -> tuple[list[int], list[int]]:
    return prompt + response, [IGNORE_INDEX] * len(prompt) + response


def test_shared_prefix_is_the_biggest_groups_common_prompt_start():
    template = list(range(10, 22))  # 12 shared prompt tokens
    encoded = [
        example(template + [30, 31], [40, 41]),
        example(template + [32], [42]),
        example(template + [33, 34, 35], [43, 44, 45]),
        example([1, 2, 3, 4, 5, 6, 7, 8, 9, 9], [46]),  # another prompt: not a member
    ]
    assert shared_prefix(encoded) == template
    members, others = split_by_prefix(encoded, template)
    assert len(members) == 3 and others == [encoded[3]]
    # the prefix stops one token short of the shortest member prompt
    assert shared_prefix([example(template, [1]), example(template, [2])]) == template[:-1]
    assert shared_prefix([example(template + [1], [2])]) == []  # one example: nothing shared
    assert shared_prefix([(template, template)]) == []  # loss on every token: no prompt


def test_prefix_shared_loss_and_gradient_equal_the_packed_ones():
    model = small_model(layers=2).train()
    template = list(range(10, 22))
    encoded = [
        example(template + [30, 31], [40, 41, 2]),
        example(template + [32], [42, 2]),
        example(template + [33, 34, 35], [43, 44, 45, 46, 2]),
        example([1, 2, 3, 4, 5, 6, 7, 8, 9, 9], [46, 47, 2]),
    ]
    rows = build_rows(encoded, 40, packing=True)
    prefix = shared_prefix(encoded)

    def loss_and_grad(prefix: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        loss, n = batch_loss(model, rows, pad_id=0, prefix=prefix)
        assert n == 3 + 2 + 5 + 3  # every response token
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    plain, plain_grads = loss_and_grad([])
    shared, shared_grads = loss_and_grad(prefix)
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-5)
    for a, b in zip(shared_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_response_loss_counts_only_labelled_tokens():
    logits = torch.zeros(1, 4, 3)
    logits[0, 1, 2] = 10.0  # predicts token 2 at position 2
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 2, IGNORE_INDEX]])
    loss, n = response_loss(logits, labels)
    assert n == 1
    expected = -torch.log_softmax(torch.tensor([0.0, 0.0, 10.0]), 0)[2]
    torch.testing.assert_close(loss, expected)


def test_lr_schedule():
    assert lr_at(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_at(99, 100, 10, 0.1) == pytest.approx(0.1, abs=1e-3)


def test_read_examples_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_examples(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{oops\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_examples(bad)
    missing = tmp_path / "m.jsonl"
    missing.write_text(json.dumps({"prompt": "a"}) + "\n")
    with pytest.raises(ValueError, match="m.jsonl:1"):
        read_examples(missing)
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps({"prompt": "p", "answer": "a"}) + "\n")
    assert read_examples(ok) == [Example("p", "a")]
