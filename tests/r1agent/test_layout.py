"""The package's shape: short functions, an acyclic module graph, imports at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import r1agent

ROOT = Path(r1agent.__file__).parent
MAX_FUNCTION_LINES = 80
#: Function-level imports that stay: optional or version-dependent dependencies, and the
#: command line, which imports a command's recipe only when that command runs.
LAZY_IMPORTS_ALLOWED = {"vllm", "torch.distributed.fsdp", "bitsandbytes", "wandb"}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


def _functions(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _top_level_imports(name: str, tree: ast.Module, modules: dict[str, ast.Module]) -> set[str]:
    deps = set()
    for node in tree.body:
        for stmt in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(stmt, ast.Import):
                deps |= {a.name for a in stmt.names}
            elif isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and stmt.module:
                deps.add(stmt.module)
                deps |= {f"{stmt.module}.{a.name}" for a in stmt.names}
    return {d for d in deps if d in modules and d != name}


def test_no_function_is_longer_than_about_a_screen():
    long = [
        f"{name}.{fn.name}: {fn.end_lineno - fn.lineno + 1} lines"
        for name, tree in _modules().items()
        for fn in _functions(tree)
        if fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


def test_module_level_imports_have_no_cycle():
    modules = _modules()
    graph = {name: _top_level_imports(name, tree, modules) for name, tree in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, node, dep]))
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_imports_are_at_module_top():
    inside = []
    for name, tree in _modules().items():
        if name == "r1agent.cli":
            continue
        for fn in _functions(tree):
            for stmt in ast.walk(fn):
                if isinstance(stmt, ast.Import):
                    mods = [a.name for a in stmt.names]
                elif isinstance(stmt, ast.ImportFrom):
                    mods = [stmt.module or ""]
                else:
                    continue
                inside += [f"{name}.{fn.name}: {m}" for m in mods if m not in LAZY_IMPORTS_ALLOWED]
    assert not inside, inside


def test_old_flat_module_paths_still_import():
    from r1agent.evaluate import evaluate_checkpoint, make_env
    from r1agent.models import load_model, small_model_threads
    from r1agent.sft import SFTConfig, read_examples, train_sft
    from r1agent.stages import ChatEnv, run_grpo
    from r1agent.tiny import build_tiny_model
    from r1agent.trainer import Batch, build_batch, train_grpo

    from r1agent.rollout import collect_episodes, generate

    assert train_grpo.__module__ == "r1agent.recipes.grpo"
    assert build_batch.__module__ == "r1agent.rl.batch" and Batch.__name__ == "Batch"
    assert evaluate_checkpoint.__module__ == "r1agent.eval.evaluate"
    assert make_env.__module__ == "r1agent.rollout.episodes"
    assert {load_model.__module__, small_model_threads.__module__} == {
        "r1agent.infra.models",
        "r1agent.accel.cpu",
    }
    assert callable(collect_episodes) and callable(generate) and callable(read_examples)
    assert SFTConfig.__module__ == "r1agent.recipes.sft" and callable(train_sft)
    assert ChatEnv.__module__ == "r1agent.rewards.chat_env" and callable(run_grpo)
    assert build_tiny_model.__module__ == "r1agent.infra.tiny"


def test_setting_an_attribute_through_a_split_alias_reaches_its_module(monkeypatch):
    import r1agent.models as models

    import r1agent.accel.cpu as cpu

    monkeypatch.setattr(models, "SMALL_MODEL_PARAMS", 7)
    assert cpu.SMALL_MODEL_PARAMS == 7
    monkeypatch.undo()
    assert cpu.SMALL_MODEL_PARAMS == 20_000_000
