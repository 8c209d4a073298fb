"""The ``oracle`` figure: the best test accuracy among a run's test evaluations.

DFA's official code (and its vanilla baseline) evaluates on the test split every 500 iterations and keeps
the checkpoint with the best test accuracy; the published DFA-table rows are that number. Recording the
same figure lets a table set ours-selected, ours-oracle and published side by side. It is *selected on
test*: it never takes part in model selection (the trainer's checkpoint choice reads validation only), and
every table that shows it says so.
"""

from __future__ import annotations

from typing import Any


class OracleTracker:
    """Collects test evaluations of the selected stage and keeps the best by unbiased accuracy; a tie
    goes to the later evaluation, as DFA's ``>=``."""

    def __init__(self, every_steps: int):
        self.every_steps = every_steps
        self.best: dict[str, Any] | None = None
        self.curve: list[list[float]] = []

    def due(self, step: int) -> bool:
        """Whether the evaluation grid includes 0-based step ``step`` (only when counting in steps)."""
        return self.every_steps > 0 and step % self.every_steps == 0

    def offer(self, test: dict[str, Any], stage: str, epoch: int, steps_done: int) -> None:
        """A test evaluation of the model after ``steps_done`` optimiser steps of ``stage``."""
        self.curve.append([steps_done, test["acc"]])
        if self.best is None or test["acc"] >= self.best["test_acc"]:
            self.best = {
                "test_acc": test["acc"],
                "test_conflicting_acc": test["conflicting_acc"],
                "test_cell_mean_acc": test["cell_mean_acc"],
                "stage": stage,
                "epoch": epoch,
                "step": steps_done,
            }

    def summary(self) -> dict[str, Any]:
        return {**(self.best or {}), "evaluations": len(self.curve), "every_steps": self.every_steps,
                "curve": self.curve, "label": "oracle (selected on test)"}
