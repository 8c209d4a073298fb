#!/usr/bin/env python3
"""Benchmark PGD, ERM, LfF, JTT and DFA on synthetic-bias datasets. See ``--help`` and README.md."""

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
