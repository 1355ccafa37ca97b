"""DeepMind Lab settings (``--env=dmlab:<level>``); defaults follow SEED RL's DMLab setup."""

from __future__ import annotations

from dataclasses import dataclass

from seed_rl.envs.errors import EnvError

RENDERERS = ("software", "hardware")


@dataclass(frozen=True)
class DmLabConfig:
    """How DeepMind Lab levels are built.

    Sources: SEED RL ``dmlab/config.py`` and ``dmlab/env.py`` (observation size,
    action repeats, the level cache flag, the observations requested) and the
    DeepMind Lab Python API (``docs/users/python_api.md``: renderer, mixerSeed).
    """

    # Observation width and height in pixels: SEED RL dmlab/config.py
    # (--width=96, --height=72), the IMPALA paper's DMLab input size.
    dmlab_width: int = 96
    dmlab_height: int = 72  # see dmlab_width
    # Each agent action is held for this many engine frames (Lab.step's
    # num_steps); rewards are summed over them. SEED RL dmlab/config.py
    # (--num_action_repeats=4), IMPALA paper. Frames are counted as engine frames.
    dmlab_action_repeats: int = 4
    # Request the INSTR (instruction text) observation, as SEED RL's env does.
    # The agents take one image observation, so the text is returned in
    # ``info["instruction"]`` and as hashed tokens in ``info["instruction_tokens"]``.
    dmlab_instruction: bool = True
    # 'software' (OSMesa) or 'hardware' (EGL/GLX): the Lab(renderer=...) argument.
    dmlab_renderer: str = "software"
    # Folder of the Brady, Konkle & Oliva (2008) images that the psychlab_*
    # levels load (DMLab config 'datasetPath'); SEED RL's --dataset_path.
    # Empty: not passed (the other levels do not need it).
    dmlab_dataset_path: str = ""
    # deepmind_lab.set_runfiles_path(...) before building levels, where the
    # module's runtime files are not next to it (SEED RL's --homepath). Empty: leave it.
    dmlab_runfiles_path: str = ""
    # Evaluation mode as in SEED RL dmlab/env.py (is_test): allow the held-out
    # DMLab-30 levels (allowHoldOutLevels) and use the fixed evaluation
    # mixerSeed 0x600D5EED so test episodes differ from training ones.
    dmlab_eval: bool = False
    # Cache of compiled levels: a local folder or an fsspec URL such as
    # gs://bucket/dmlab_cache (needs gcsfs: pip install 'seed_rl[dmlab]').
    # Empty: no cache, every new map is compiled. SEED RL README / --level_cache_dir.
    level_cache_dir: str = ""
    # Extra options for the level, "key=value,key=value" (e.g. "botCount=2" for
    # lt_chasm): the engine passes options it does not know to the level script
    # (python_api.md). Empty: none.
    dmlab_level_options: str = ""

    def level_options(self) -> dict[str, str]:
        """``dmlab_level_options`` as a dict."""
        options = {}
        for item in filter(None, (part.strip() for part in self.dmlab_level_options.split(","))):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise EnvError(
                    f"bad DmLabConfig: dmlab_level_options must be key=value pairs separated by commas, "
                    f"got {self.dmlab_level_options!r}"
                )
            options[key.strip()] = value.strip()
        return options

    def __post_init__(self) -> None:
        checks = (
            (self.dmlab_width >= 1, f"dmlab_width must be >= 1, got {self.dmlab_width}"),
            (self.dmlab_height >= 1, f"dmlab_height must be >= 1, got {self.dmlab_height}"),
            (
                self.dmlab_action_repeats >= 1,
                f"dmlab_action_repeats must be >= 1, got {self.dmlab_action_repeats}",
            ),
            (
                self.dmlab_renderer in RENDERERS,
                f"dmlab_renderer must be one of {', '.join(RENDERERS)}, got {self.dmlab_renderer!r}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise EnvError(f"bad DmLabConfig: {message}")
        self.level_options()
