"""Sample Factory's Atari example (sf_examples.atari.train_atari) with ALE's environments registered.

  SF_VENV/bin/python tools/sf_train_atari.py --env=atari_pong [Sample Factory flags...]

Run by tools/bench_sample_factory.py with the Python of the throwaway Sample
Factory virtualenv that tools/bench_sample_factory.sh sets up, never the
project's. Sample Factory 2.1.1 pins gymnasium<1.0, whose ALE (ale-py 0.9/0.10)
registers PongNoFrameskip-v4 and the rest only when ``ale_py`` is imported; the
example never imports it. Its workers are started with multiprocessing's
"spawn", which imports this file again in each of them (as ``__mp_main__``), so
the import below reaches every process that makes an environment.
"""

import sys

try:
    import ale_py  # noqa: F401  (registers the ALE environments with gymnasium)
    from sf_examples.atari.train_atari import main
except ImportError as e:  # not Sample Factory's venv
    main, missing = None, e

if __name__ == "__main__":
    if main is None:
        print(f"usage: SF_VENV/bin/python {sys.argv[0]} --env=atari_pong [Sample Factory flags...]\n"
              f"needs Sample Factory's virtualenv ({missing}); tools/bench_sample_factory.sh sets it up")
        sys.exit(0 if {"-h", "--help"} & set(sys.argv[1:]) else 1)
    sys.exit(main())
