"""What the benchmark tools (``tools/bench_*.py``) share, and what their tests check.

It lives in the package so that tools and tests import it like any other
seed_rl module, never each other through ``sys.path`` edits.
"""
