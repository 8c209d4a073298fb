#!/usr/bin/env python3
"""Benchmark PGD, ERM, LfF, JTT and DFA on synthetic-bias datasets. See ``--help`` and README.md."""

import sys

from bench.numerics import apply_from_argv

# Portable numerics are environment variables that PyTorch, oneDNN and MKL read when they load: set them
# before anything imports torch.
apply_from_argv(sys.argv[1:])

if __name__ == "__main__":
    # Imported here, not above: a --jobs worker (spawned) imports this file again and needs only the runner.
    from bench.cli import main

    sys.exit(main())
