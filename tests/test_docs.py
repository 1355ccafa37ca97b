"""The README and docs/ stay short, linked and runnable.

- README.md is a quickstart of at most 200 lines whose first code block is the
  two set-up-and-go commands;
- every relative link in README.md and docs/*.md points to an existing file, and
  the README links every docs page;
- every ``--flag`` on a command line in a bash block that runs ``seed_rl.train``,
  ``run_local.sh`` or ``seed_rl.actor`` is a flag that program defines (read from
  its ``--helpfull``); ``--noX`` is the boolean X; ``--game``, ``--scenario`` and
  ``--level`` are run_local.sh's own options;
- every ``./run_local.sh FAMILY`` names a family run_local.sh accepts.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MARKDOWN = [README, *DOCS]
MAX_README_LINES = 200
QUICKSTART = ["./run_local.sh atari", "./run_tests.sh"]
RUN_LOCAL_OPTIONS = {"game", "scenario", "level"}  # taken by run_local.sh, not passed to seed_rl.train
BASH_INFO = {"bash", "sh", "shell"}

FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
FLAG = re.compile(r"(?<![\w-])--([A-Za-z][\w-]*)")
HELP_FLAG = re.compile(r"^\s+(?:-[\w?],)?--(\[no\])?([A-Za-z0-9_]+):")
RUN_LOCAL_FAMILY = re.compile(r"\./run_local\.sh\s+([^\s`]+)")


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def fenced_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(info string, lines) of every fenced code block, in order."""
    blocks: list[tuple[str, list[str]]] = []
    fence: str | None = None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence, info, body = match.group(1), match.group(2).lower(), []
            continue
        if match and match.group(1).startswith(fence) and not match.group(2):
            blocks.append((info, body))
            fence = None
        else:
            body.append(line)
    assert fence is None, "a fenced code block is not closed"
    return blocks


def prose(text: str) -> str:
    """``text`` without its fenced code blocks and inline code spans."""
    kept: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
        elif fence is not None and match and match.group(1).startswith(fence) and not match.group(2):
            fence = None
        elif fence is None:
            kept.append(INLINE_CODE.sub("", line))
    return "\n".join(kept)


def logical_lines(lines: list[str]) -> list[str]:
    """Shell lines with backslash continuations joined."""
    joined: list[str] = []
    pending = ""
    for line in lines:
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    if pending:
        joined.append(pending)
    return joined


def command_part(line: str) -> str:
    """The line up to a shell comment (a ``#`` that starts a word, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


@functools.lru_cache(maxsize=None)
def defined_flags(module: str) -> dict[str, bool]:
    """Flag name -> is boolean, parsed from ``python -m MODULE --helpfull``."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--helpfull"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    flags: dict[str, bool] = {}
    for line in output.splitlines():
        match = HELP_FLAG.match(line)
        if match:
            flags[match.group(2)] = bool(match.group(1))
    assert "env" in flags and "helpfull" in flags, f"could not read the flags of {module}:\n{output[-3000:]}"
    return flags


def is_defined(flag: str, flags: dict[str, bool]) -> bool:
    if flag in flags:
        return True
    return flag.startswith("no") and flags.get(flag[2:], False)


@functools.lru_cache(maxsize=None)
def run_local_families() -> frozenset[str]:
    script = (ROOT / "run_local.sh").read_text()
    match = re.search(r'case "\$family" in\n(.*?)\nesac', script, re.DOTALL)
    assert match, "run_local.sh has no `case \"$family\" in ... esac`"
    families = frozenset(re.findall(r"^\s*([a-z][a-z0-9_]*)\)", match.group(1), re.MULTILINE))
    assert "atari" in families, families
    return families


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move details to docs/"


def test_readme_starts_with_the_two_commands():
    blocks = fenced_blocks(README.read_text())
    assert blocks, "README.md has no code block"
    commands = [command_part(line).strip() for line in blocks[0][1]]
    assert [c for c in commands if c] == QUICKSTART


@pytest.mark.parametrize("path", MARKDOWN, ids=_name)
def test_relative_links_point_to_existing_files(path):
    text = prose(path.read_text())
    targets = INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)
    broken = []
    for target in targets:
        if SCHEME.match(target) or target.startswith("#"):
            continue
        file_part = target.split("#", 1)[0].split("?", 1)[0]
        resolved = (path.parent / file_part).resolve()
        if not resolved.exists() or not resolved.is_relative_to(ROOT):
            broken.append(target)
    assert not broken, f"{_name(path)}: links to missing files: {broken}"


def test_readme_links_every_docs_page():
    text = prose(README.read_text())
    linked = {(ROOT / t.split("#", 1)[0]).resolve() for t in INLINE_LINK.findall(text) if not SCHEME.match(t)}
    missing = [_name(page) for page in DOCS if page.resolve() not in linked]
    assert not missing, f"README.md does not link {missing}"


def _commands() -> list[tuple[str, str]]:
    """(file, logical line) of every line of a bash block in README.md and docs/*.md."""
    found = []
    for path in MARKDOWN:
        for info, lines in fenced_blocks(path.read_text()):
            if info in BASH_INFO:
                found += [(_name(path), line) for line in logical_lines(lines)]
    return found


def torchrun_options() -> set[str]:
    """The long options torchrun's parser accepts (it takes both --max-restarts and --max_restarts)."""
    from torch.distributed.run import get_args_parser

    return {option.lstrip("-") for action in get_args_parser()._actions for option in action.option_strings}


def test_documented_flags_exist():
    unknown = []
    checked = 0
    for where, line in _commands():
        command = command_part(line)
        if "torchrun" in command and "seed_rl.train" in line:
            # torchrun's own options come before "-m seed_rl.train", the program's flags after it.
            launcher, line = line.split("seed_rl.train", 1)
            checked += 1
            unknown += [f"{where}: torchrun --{flag} in: {launcher.strip()}"
                        for flag in FLAG.findall(launcher) if flag not in torchrun_options()]
        if "seed_rl.actor" in command:
            flags, extra = defined_flags("seed_rl.actor"), set()
        elif "seed_rl.train" in command:
            flags, extra = defined_flags("seed_rl.train"), set()
        elif "run_local.sh" in command:
            flags, extra = defined_flags("seed_rl.train"), RUN_LOCAL_OPTIONS
        else:
            continue
        checked += 1
        for flag in FLAG.findall(line):
            if flag not in extra and not is_defined(flag, flags):
                unknown.append(f"{where}: --{flag} in: {line.strip()}")
    assert checked, "no seed_rl.train, seed_rl.actor or run_local.sh command found in a bash block"
    assert not unknown, "flags the programs do not define:\n" + "\n".join(unknown)


def test_run_local_families_exist():
    families = run_local_families()
    wrong = []
    for path in MARKDOWN:
        for family in RUN_LOCAL_FAMILY.findall(path.read_text()):
            if family not in families:
                wrong.append(f"{_name(path)}: ./run_local.sh {family}")
    assert not wrong, f"run_local.sh accepts {sorted(families)}; the docs use:\n" + "\n".join(wrong)
