"""A shared cache of compiled DeepMind Lab levels (``--level_cache_dir``).

Levels that generate a new map per episode (e.g. explore_goal_locations_small)
compile it first, which takes seconds; with a cache, each map is compiled once
and reused by every actor, as in SEED RL's README. DeepMind Lab calls the two
methods of the object given as ``Lab(..., level_cache=...)``
(``docs/users/python_api.md``, "Level Cache"):

- ``fetch(key, pk3_path) -> bool``: copy the cached level to ``pk3_path``, or
  return False when there is none;
- ``write(key, pk3_path)``: store the level the engine compiled at ``pk3_path``.

The cache lives in a local folder or at any fsspec URL: ``gs://bucket/dir``
(through gcsfs, ``pip install 'seed_rl[dmlab]'``), ``memory://`` (tests), ...
Local writes go to a temporary file in the target folder, are fsynced and
renamed into place, so a reader never sees half a level; object stores such as
GCS make an object visible only once its upload is complete. The cache is an
optimisation: a failed fetch is a miss and a failed write is logged, neither
stops training.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile

import fsspec
from fsspec.implementations.local import LocalFileSystem

from seed_rl.envs.errors import EnvError

log = logging.getLogger(__name__)

_INSTALL_HINT = {"gs": "gcsfs", "gcs": "gcsfs", "s3": "s3fs", "az": "adlfs", "abfs": "adlfs"}


def cache_path(key: str) -> str:
    """Where ``key`` is stored, relative to the cache root: ``ab/abcdef....pk3``.

    Keys are hashed so any key is a safe file name, and spread over 256
    sub-folders so no folder grows huge.
    """
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"{digest[:2]}/{digest}.pk3"


class LevelCache:
    """The level cache DeepMind Lab reads and fills, at a local path or fsspec URL."""

    def __init__(self, location: str):
        self.location = location
        protocol = location.split("://", 1)[0] if "://" in location else "file"
        try:
            self._fs, self._root = fsspec.core.url_to_fs(location)
        except ImportError as e:
            package = _INSTALL_HINT.get(protocol, f"the fsspec backend for {protocol}://")
            raise EnvError(
                f"--level_cache_dir={location} needs {package}, which is not installed ({e}); "
                "run pip install 'seed_rl[dmlab]'"
            ) from None
        except ValueError as e:
            raise EnvError(f"--level_cache_dir={location} is not a usable location: {e}") from None
        self._root = self._root.rstrip("/")
        self._local = isinstance(self._fs, LocalFileSystem)
        if self._local:
            try:
                os.makedirs(self._root, exist_ok=True)
            except OSError as e:
                raise EnvError(f"--level_cache_dir={location}: cannot create the folder ({e})") from None
        self.hits = 0
        self.misses = 0
        self.writes = 0

    def _path(self, key: str) -> str:
        return f"{self._root}/{cache_path(key)}"

    def fetch(self, key: str, pk3_path: str) -> bool:
        """Copies the level cached under ``key`` to ``pk3_path``; False when there is none."""
        path = self._path(key)
        try:
            self._fs.get_file(path, pk3_path)
        except FileNotFoundError:
            self.misses += 1
            return False
        except Exception as e:  # a broken cache must never stop the actor
            log.warning("level cache %s: fetching %s failed (%s); compiling the level instead", self.location, path, e)
            self.misses += 1
            return False
        self.hits += 1
        return True

    def write(self, key: str, pk3_path: str) -> None:
        """Stores the compiled level at ``pk3_path`` under ``key``, unless it is already cached."""
        path = self._path(key)
        try:
            if self._fs.exists(path):
                return
            if self._local:
                _atomic_local_copy(pk3_path, path)
            else:
                self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                self._fs.put_file(pk3_path, path)
        except Exception as e:
            log.warning("level cache %s: writing %s failed (%s); the level stays uncached", self.location, path, e)
            return
        self.writes += 1


def _atomic_local_copy(source: str, destination: str) -> None:
    """Copies ``source`` to ``destination`` so that readers see all of it or nothing."""
    folder = os.path.dirname(destination)
    os.makedirs(folder, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pk3")
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            while chunk := src.read(1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, destination)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
