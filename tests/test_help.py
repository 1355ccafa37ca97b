"""--help tells a newcomer what each flag does: the main flags in ``--help``, every config field's comment and
choices in the help of its flag."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing

import pytest

from seed_rl.agents.impala.config import ImpalaConfig
from seed_rl.agents.r2d2.config import R2D2Config
from seed_rl.config.flags import check_choices, field_comments
from seed_rl.envs.config import EnvConfig
from seed_rl.envs.dmlab_config import DmLabConfig
from train_helpers import ROOT

CONFIGS = (ImpalaConfig, R2D2Config, EnvConfig, DmLabConfig)


def _help(module: str, flag: str = "--help") -> str:
    result = subprocess.run([sys.executable, "-m", module, flag], cwd=ROOT, capture_output=True, text=True, timeout=120)
    return result.stdout + result.stderr


def _flag_help(text: str, name: str) -> str:
    """The help paragraph of ``--name`` in absl's help output."""
    match = re.search(rf"^  --(?:\[no\])?{name}:(.*?)(?=^  --|^\S|\Z)", text, re.M | re.S)
    assert match, f"--{name} is not in the help"
    return " ".join(match.group(1).split())


def test_train_help_lists_the_main_flags_with_their_choices():
    text = _help("seed_rl.train")
    for name in ("agent", "env", "envs_per_actor", "num_actors", "transport", "double_buffer", "torso", "logdir",
                 "total_environment_frames", "batch_size", "burn_in"):
        _flag_help(text, name)
    assert "rmsprop_tf" in _flag_help(text, "optimizer")
    assert "nature" in _flag_help(text, "torso") and "impala_deep" in _flag_help(text, "torso")
    assert "frame_skip" not in text  # environment settings are in --helpfull


def test_actor_help_lists_the_shared_flags():
    text = _help("seed_rl.actor")
    for name in ("learner_address", "actor_id", "tls_ca_file", "env", "envs_per_actor", "transport", "seed"):
        _flag_help(text, name)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_config_field_has_a_comment_that_becomes_its_help(cls):
    comments = field_comments(cls)
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls) if not dataclasses.is_dataclass(hints[f.name])]  # nested: flat
    assert [name for name in fields if not comments.get(name)] == []
    text = _help("seed_rl.train", "--helpfull")
    for name in fields:
        first_words = " ".join(comments[name].split()[:4])
        assert first_words in _flag_help(text, name), name


def test_choices_are_checked_from_the_field_types():
    check_choices(ImpalaConfig())
    with pytest.raises(ValueError, match=r"--optimizer must be rmsprop, rmsprop_tf or adam, got 'sgd'"):
        check_choices(ImpalaConfig(optimizer="sgd"))
    with pytest.raises(ValueError, match=r"--torso must be auto, .* or mlp, got 'resnet'"):
        R2D2Config(torso="resnet").validate()
