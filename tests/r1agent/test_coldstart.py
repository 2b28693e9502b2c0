from __future__ import annotations

import gymnasium as gym
import pytest

import r1envs  # noqa: F401
from r1agent.data.coldstart import format_response, solve_arithmetic, solver_examples, zero_to_r1
from r1envs import formats


def test_solver_steps_and_check():
    steps, answer = solve_arithmetic("What is 47 + 18 - 25?")
    assert steps[:2] == ["47 + 18 = 65", "65 - 25 = 40"]
    assert steps[2] == "Check: 40 + 25 = 65, 65 - 18 = 47."
    assert answer == "40"
    steps, answer = solve_arithmetic("What is 3 + 4 * 5 - 6?")
    assert steps[0] == "4 * 5 = 20" and answer == "17"


def test_solver_rejects_other_text():
    with pytest.raises(ValueError, match="not an arithmetic question"):
        solve_arithmetic("Who wrote Hamlet?")


def test_solver_examples_are_graded_correct_in_the_r1_format():
    examples = solver_examples(["r1/Arithmetic-v0"], 20, seed=0)
    env = gym.make("r1/Arithmetic-v0")
    for i, ex in enumerate(examples):
        obs, _ = env.reset(seed=i)
        assert ex.prompt == obs
        assert formats.parse(ex.response, "r1").well_formed
        _, _, _, _, info = env.step(ex.response)
        assert info["correct"]


def test_r1_zero_format_and_conversion():
    zero = format_response(["1 + 2 = 3"], "3", "r1-zero")
    assert formats.parse(zero, "r1-zero").well_formed
    r1 = zero_to_r1(zero)
    assert r1 is not None and formats.parse(r1, "r1").well_formed
    assert r1.endswith("\\boxed{3}.")
    assert zero_to_r1("no tags here") is None


def test_model_written_zero_outputs_are_rewritten_and_filtered():
    import re

    from r1agent.data.coldstart import model_examples
    from r1agent.rollout.engine import Completion

    question = re.compile(r"User: (What is .*?\?)\.? Assistant:")

    def zero_policy(model, tokenizer, prompts, **kw):
        out = []
        for i, p in enumerate(prompts):
            steps, answer = solve_arithmetic(question.search(p).group(1))
            answer = answer if i % 2 == 0 else "0"  # every other sample wrong
            out.append(Completion([], [1], format_response(steps, answer, "r1-zero"), None, False))
        return out

    examples = model_examples(
        None, None, ["r1/Arithmetic-v0"], 4, source="zero", samples=2, generate_fn=zero_policy
    )
    assert 1 <= len(examples) <= 4
    for ex in examples:
        assert formats.parse(ex.response, "r1").well_formed and "\\boxed{" in ex.response


def test_detailed_solver_splits_tens_and_units_and_stays_correct():
    steps, answer = solve_arithmetic("What is 68 + 64 - 87?", detailed=True)
    assert steps[0] == "68 + 64 = 68 + 60 + 4 = 128 + 4 = 132"
    assert steps[1] == "132 - 87 = 132 - 80 - 7 = 52 - 7 = 45" and answer == "45"
    assert solver_examples(
        ["r1/Arithmetic-v0"], 30, detailed=True
    )  # graded correct (asserted inside)


def test_has_solver():
    from r1agent.data.coldstart import has_solver

    assert has_solver("r1/Arithmetic-v0") and has_solver("r1/Countdown-v0")
    assert not has_solver("r1/Math-v0")


def test_model_queries_in_chat_carry_the_instruction_and_the_shots(tiny):
    from r1agent.data.coldstart import _shots, model_query
    from r1agent.infra.models import load_tokenizer

    tok = load_tokenizer(str(tiny))
    env = gym.make("r1/Math-v0", output_format="r1-zero")
    obs, info = env.reset(seed=3)
    question = info["question"]
    q = model_query("reflection", tok, obs, info, "chat", output_format="r1-zero")
    assert q.startswith("<|im_start|>system\n" + formats.default_system_prompt("r1-zero"))
    assert "<|im_start|>user\nAnswer with detailed reasoning" in q
    assert q.endswith(f"{question}<|im_end|>\n<|im_start|>assistant\n")
    assert "<answer>" in q.split("<|im_start|>user")[1]  # asks for the r1-zero tags
    shots = _shots(["r1/Math-v0"], 2, 100, "r1-zero", {})  # Math has no solver: arithmetic
    q = model_query("fewshot", tok, obs, info, "chat", shots=shots, output_format="r1-zero")
    assert q.count("<|im_start|>assistant\n") == 3 and q.count("</answer>") >= 2
    assert q.index(shots[1][2].strip()) < q.index(question)
    q = model_query("fewshot", tok, obs, info, "observation", shots=shots)
    assert q.startswith(shots[0][0]) and q.endswith(obs)


def test_model_responses_are_kept_only_well_formed_in_the_output_format():
    from r1agent.data.coldstart import model_response

    zero = format_response(["1 + 2 = 3"], "3", "r1-zero")
    r1 = format_response(["1 + 2 = 3"], "3", "r1")
    assert model_response("zero", zero, "r1") == zero_to_r1(zero)
    assert model_response("zero", zero, "r1-zero") == zero.strip()
    assert model_response("reflection", zero, "r1") is None
    assert model_response("reflection", r1, "r1-zero") is None
    assert model_response("fewshot", r1 + "\n\nProblem: What is 2 + 2?", "r1") == r1


def test_an_endpoint_writes_model_examples(tiny):
    import json
    import re
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from r1agent.data.coldstart import endpoint_generate, model_examples
    from r1agent.infra.models import load_tokenizer

    asked = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            content = body["messages"][0]["content"]
            asked.append(content)
            m = re.search(r"(What is [-+*\d ]+\?)", content)
            text = format_response(*solve_arithmetic(m.group(1)), "r1") if m else "?"
            reply = json.dumps({"choices": [{"message": {"content": text}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tok = load_tokenizer(str(tiny))
        spec = f"http://127.0.0.1:{server.server_port}/v1#teacher"
        examples = model_examples(
            None,
            tok,
            ["r1/Arithmetic-v0"],
            3,
            source="reflection",
            samples=1,
            prompt_format="chat",
            query_format="observation",
            generate_fn=endpoint_generate(spec),
        )
    finally:
        server.shutdown()
    assert len(asked) == 3 and all(a.startswith("Answer with detailed reasoning") for a in asked)
    assert "<|im_start|>" not in asked[0]  # plain text to the endpoint
    assert len(examples) == 3
    assert all(e.prompt.startswith("<|im_start|>system") for e in examples)  # chat for training
