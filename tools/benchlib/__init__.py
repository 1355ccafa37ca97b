"""What the benchmark tools (``tools/*.py``) share, and what their tests check.

The scripts beside it import it as ``benchlib`` (a script's own folder is on
its ``sys.path``); the tests find it through pytest's ``pythonpath`` setting.
It is not part of the installed package: nothing in ``seed_rl`` uses it.
"""
