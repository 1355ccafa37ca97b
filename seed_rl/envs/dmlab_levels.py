"""DeepMind Lab level names: the DMLab-30 suite, the classic levels, and custom paths.

Level scripts live under DeepMind Lab's ``game_scripts/levels``; the DMLab-30
suite (Espeholt et al. 2018, and SEED RL ``dmlab/games.py``) is in
``contributed/dmlab30/``. ``resolve_level`` turns what a user typed into the
path the engine loads: ``rooms_watermaze``, ``dmlab30/rooms_watermaze`` and
``contributed/dmlab30/rooms_watermaze`` all give the last one.
"""

from __future__ import annotations

import difflib

from seed_rl.envs.errors import EnvError

DMLAB30_DIR = "contributed/dmlab30"

# The 30 training levels of DMLab-30 (SEED RL dmlab/games.py, DMLAB_30).
DMLAB_30 = (
    "rooms_collect_good_objects_train",
    "rooms_exploit_deferred_effects_train",
    "rooms_select_nonmatching_object",
    "rooms_watermaze",
    "rooms_keys_doors_puzzle",
    "language_select_described_object",
    "language_select_located_object",
    "language_execute_random_task",
    "language_answer_quantitative_question",
    "lasertag_one_opponent_small",
    "lasertag_three_opponents_small",
    "lasertag_one_opponent_large",
    "lasertag_three_opponents_large",
    "natlab_fixed_large_map",
    "natlab_varying_map_regrowth",
    "natlab_varying_map_randomized",
    "skymaze_irreversible_path_hard",
    "skymaze_irreversible_path_varied",
    "psychlab_arbitrary_visuomotor_mapping",
    "psychlab_continuous_recognition",
    "psychlab_sequential_comparison",
    "psychlab_visual_search",
    "explore_object_locations_small",
    "explore_object_locations_large",
    "explore_obstructed_goals_small",
    "explore_obstructed_goals_large",
    "explore_goal_locations_small",
    "explore_goal_locations_large",
    "explore_object_rewards_few",
    "explore_object_rewards_many",
)
# Test variants of the two levels whose train and test versions differ
# (SEED RL dmlab/games.py, GAME_MAPPING).
DMLAB_30_TEST_ONLY = ("rooms_collect_good_objects_test", "rooms_exploit_deferred_effects_test")
# Levels at the top of game_scripts/levels (SEED RL dmlab/games.py, OTHERS).
CLASSIC_LEVELS = (
    "lt_chasm",
    "lt_hallway_slope",
    "lt_horseshoe_color",
    "lt_space_bounce_hard",
    "nav_maze_random_goal_01",
    "nav_maze_random_goal_02",
    "nav_maze_random_goal_03",
    "nav_maze_static_01",
    "nav_maze_static_02",
    "nav_maze_static_03",
    "seekavoid_arena_01",
    "stairway_to_melon",
)
# SEED RL's default level (dmlab/config.py, --game).
DEFAULT_LEVEL = "explore_goal_locations_small"

_DMLAB30_ALL = DMLAB_30 + DMLAB_30_TEST_ONLY
_DMLAB30_PREFIXES = (f"{DMLAB30_DIR}/", "dmlab30/")


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def resolve_level(name: str) -> str:
    """Returns the level path DeepMind Lab loads for ``name``.

    Accepted: a DMLab-30 level by its short name (``rooms_watermaze``) or path
    (``dmlab30/rooms_watermaze``, ``contributed/dmlab30/rooms_watermaze``); a
    classic level (``seekavoid_arena_01``); any other path with a ``/``
    (``demos/extra_entities``, a level of your own), passed on unchanged.

    Raises:
      EnvError: an empty name, an unknown DMLab-30 level, or an unknown bare
        name; the message suggests the closest known level.
    """
    level = name.strip().removesuffix(".lua")
    if not level:
        raise EnvError(f"no DeepMind Lab level given; write dmlab:<level>, e.g. dmlab:{DEFAULT_LEVEL}")
    for prefix in _DMLAB30_PREFIXES:
        if level.startswith(prefix):
            short = level[len(prefix):]
            if short in _DMLAB30_ALL:
                return f"{DMLAB30_DIR}/{short}"
            hint = _suggest(short, list(_DMLAB30_ALL))
            raise EnvError(
                f"unknown DMLab-30 level {name!r}{hint or ';'} (DMLab-30: {', '.join(DMLAB_30)})"
            )
    if "/" in level:
        return level
    if level in _DMLAB30_ALL:
        return f"{DMLAB30_DIR}/{level}"
    if level in CLASSIC_LEVELS:
        return level
    hint = _suggest(level, list(_DMLAB30_ALL + CLASSIC_LEVELS))
    raise EnvError(
        f"unknown DeepMind Lab level {name!r}{hint or ';'} known levels: DMLab-30 "
        f"({', '.join(DMLAB_30)}) and {', '.join(CLASSIC_LEVELS)}; give another level "
        "by its path under game_scripts/levels, e.g. dmlab:demos/extra_entities"
    )
