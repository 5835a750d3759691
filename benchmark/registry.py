"""TASKS: task name -> the module holding its DATASETS and METHODS.

Explicit, and imported only when that task runs: a broken task cannot take the others down.
"""
from __future__ import annotations

import importlib
from types import ModuleType

TASKS: dict[str, str] = {
    "sr": "tasks.sr.registry",
    "inpaint": "tasks.inpaint.registry",
    "dualsr": "tasks.dualsr.registry",
    "interp": "tasks.interp.registry",
}


def load_task(name: str) -> ModuleType:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: expected one of {sorted(TASKS)}")
    return importlib.import_module(TASKS[name])


def select_methods(task: ModuleType, names: list[str] | None) -> list[str]:
    if not names:
        return list(task.METHODS)
    unknown = [n for n in names if n not in task.METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown} for this task: known are {sorted(task.METHODS)}")
    return names
