#!/usr/bin/env python3
"""Benchmark PGD, ERM, LfF, JTT and DFA on synthetic-bias datasets. See ``--help`` and README.md."""

import sys

from bench.numerics import apply_from_argv

# Portable numerics are environment variables that PyTorch, oneDNN and MKL read when they load: set them
# before anything imports torch.
apply_from_argv(sys.argv[1:])

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
