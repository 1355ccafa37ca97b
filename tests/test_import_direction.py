"""Imports between seed_rl's folders go the one way docs/architecture.md draws, function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seed_rl"

# Each part of the package and the parts it may import. A role imports the layers below it, never one
# that imports it back; the command lines and their wiring (config, launch) sit on top.
LOWER = {
    "exits": set(),
    "core": set(),
    "envs": {"core"},
    "networks": {"core"},
    "replay": {"core", "_ops"},
    "transport": {"core", "envs"},
    "acting": {"core", "envs", "transport", "exits"},
    "agents": {"core", "envs", "networks", "replay", "config"},
    "learner": {"core", "envs", "networks", "replay", "transport", "agents", "config", "launch", "exits"},
    "evaluation": {"core", "envs", "networks", "agents", "learner", "exits"},
    "config": {"core", "envs", "acting", "exits"},
    "launch": {"core", "envs", "transport", "acting", "config", "exits"},
}
COMMANDS = {"train", "actor", "evaluate", "__init__", "__main__"}  # may import any part


def part_of(module: str) -> str | None:
    """The folder (or top-level module) of seed_rl that ``module`` names; None outside seed_rl."""
    names = module.split(".")
    return names[1] if names[0] == "seed_rl" and len(names) > 1 else None


def imported_parts(path: Path) -> dict[str, int]:
    """The parts of seed_rl that ``path`` imports anywhere in it, with the first line that does."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from seed_rl import exits`` imports the part it names.
            modules = [f"seed_rl.{a.name}" for a in node.names] if node.module == "seed_rl" else [node.module]
        else:
            continue  # relative imports stay inside their folder
        for module in modules:
            part = part_of(module)
            if part is not None:
                found.setdefault(part, node.lineno)
    return found


def wrong_imports(package: Path) -> list[str]:
    """Every import of a part that the importing part may not use, as ``file:line: a -> b``."""
    wrong = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        part = relative.parts[0].removesuffix(".py")
        if part in COMMANDS:
            continue
        allowed = LOWER.get(part)
        for target, line in imported_parts(path).items():
            if target == part:
                continue
            if allowed is None or target not in allowed:
                wrong.append(f"{relative}:{line}: {part} -> {target}")
    return wrong


def test_the_allowed_imports_have_no_circle():
    def reaches(start: str, goal: str, seen: frozenset = frozenset()) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in LOWER.get(start, ()))

    assert not [part for part in LOWER if reaches(part, part)]


def test_every_import_goes_down():
    assert wrong_imports(PACKAGE) == []


def test_every_part_of_the_package_has_a_place():
    parts = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert parts - COMMANDS - set(LOWER) == set()


@pytest.mark.parametrize(
    "part, planted",
    [
        ("core", "def f():\n    from seed_rl.agents.impala import optimizers\n"),  # inside a function
        ("agents/r2d2", "from seed_rl.learner.run_config import CheckpointMismatch\n"),
        ("transport", "from seed_rl import exits\n"),
    ],
)
def test_a_planted_upward_import_is_found(tmp_path, part, planted):
    copy = tmp_path / "seed_rl"
    (copy / part).mkdir(parents=True)
    (copy / part / "planted.py").write_text(planted)
    assert len(wrong_imports(copy)) == 1
