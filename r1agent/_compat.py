"""Compatibility aliases: the import paths of the flat layout before the subpackages.

``from r1agent.trainer import train_grpo``, ``import r1agent.evaluate`` and the other
module paths of the flat layout keep working: each old module name is an alias of the
module(s) that now hold its contents (:data:`ALIASES`). A name that moved whole is the new
module itself; a name whose contents were split is a view over the new modules, reading
and setting attributes where they are defined. New code imports the new paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any

#: old module (``r1agent.<name>``) -> the modules now holding its contents.
ALIASES: dict[str, tuple[str, ...]] = {
    "checkpoint": ("r1agent.infra.checkpoint",),
    "coldstart": ("r1agent.data.coldstart",),
    "config": ("r1agent.infra.config",),
    "demo": ("r1agent.recipes.demo",),
    "distill": ("r1agent.recipes.distill",),
    "distributed": ("r1agent.infra.distributed",),
    "evaluate": ("r1agent.eval.evaluate", "r1agent.rollout.episodes"),
    "fastlm": ("r1agent.accel.fastlm",),
    "grpo": ("r1agent.rl.grpo",),
    "judges": ("r1agent.rewards.judges",),
    "metrics": ("r1agent.infra.metrics", "r1agent.rl.stats"),
    "models": ("r1agent.infra.models", "r1agent.accel.cpu"),
    "native": ("r1agent.accel.native",),
    "pipeline": ("r1agent.recipes.pipeline",),
    "pretrain": ("r1agent.recipes.pretrain",),
    "rejection": ("r1agent.data.rejection",),
    "report": ("r1agent.eval.report",),
    "reward_model": ("r1agent.rewards.reward_model", "r1agent.recipes.reward_model"),
    "rollout_vllm": ("r1agent.rollout.vllm_engine",),
    "sft": ("r1agent.data.sft", "r1agent.recipes.sft"),
    "stages": (
        "r1agent.recipes.stages",
        "r1agent.rewards.chat_env",
        "r1agent.data.general",
    ),
    "tiny": ("r1agent.infra.tiny",),
    "trainer": ("r1agent.recipes.grpo", "r1agent.rl.batch"),
}


class _View(types.ModuleType):
    """An old module whose contents now live in several modules."""

    _targets: tuple[types.ModuleType, ...] = ()
    _saved: dict[str, tuple[types.ModuleType, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        for target in type(self)._targets:
            if hasattr(target, name):
                return getattr(target, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        for target in type(self)._targets:
            if not name.startswith("__") and hasattr(target, name):
                type(self)._saved.setdefault(name, (target, getattr(target, name)))
                setattr(target, name, value)
                return
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        # undoing a set through the view (as ``monkeypatch`` does) restores the first value
        if name in type(self)._saved:
            target, value = type(self)._saved.pop(name)
            setattr(target, name, value)
            return
        super().__delattr__(name)

    def __dir__(self) -> list[str]:
        return sorted({n for t in type(self)._targets for n in dir(t)})


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``r1agent.<old name>`` to the module(s) in :data:`ALIASES`."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        """A spec for an aliased old name, else ``None``."""
        parent, _, name = fullname.rpartition(".")
        if parent != "r1agent" or name not in ALIASES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        """The new module itself, or a view over the modules its contents moved to."""
        targets = tuple(importlib.import_module(m) for m in ALIASES[spec.name.rpartition(".")[2]])
        if len(targets) == 1:
            return targets[0]
        view_type = type("_View", (_View,), {"_targets": targets, "_saved": {}})
        view = view_type(spec.name, targets[0].__doc__)
        view.__all__ = sorted({n for t in targets for n in getattr(t, "__all__", ())})
        return view

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the targets are imported already."""


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
