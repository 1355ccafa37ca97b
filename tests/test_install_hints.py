"""Package code never sends a user to a repository file that an installed wheel lacks.

A message may name ``pip install 'seed_rl[extra]'``; one that needs a
repository script (``tools/*.sh``, ``pip install -e .``) says that it needs a
seed_rl source checkout. Docstrings (for readers of the source) are exempt.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seed_rl"
REPOSITORY_ONLY = re.compile(r"pip install -e|\btools/\S+\.sh\b|\./run_\w+\.sh|setup_venv")


def _messages(path: Path) -> list[str]:
    """String constants of ``path``, docstrings (and other bare string statements) left out."""
    tree = ast.parse(path.read_text())
    bare = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return [
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in bare
    ]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_messages_naming_repository_scripts_say_they_need_a_source_checkout(path):
    for text in _messages(path):
        if REPOSITORY_ONLY.search(text):
            assert "source checkout" in text, f"{path.name}: {text!r}"


def test_the_rule_sees_a_bare_script_hint(tmp_path):
    module = tmp_path / "hint.py"
    module.write_text('"""Built by tools/setup_football.sh."""\nHINT = "run tools/setup_football.sh"\n')
    assert _messages(module) == ["run tools/setup_football.sh"]
