"""Debiasing methods behind one ``Method`` interface. Registering a method = one file + one import.

The import order is the registry order: the default ``--methods`` follows it (the tables order their rows
by ``reporting.tables.PAPER_ORDER``, the bias-supervised GroupDRO last). Today: ERM, LfF, JTT, DFA, LC,
DPR, PGD and GroupDRO."""

# ruff: noqa: I001, F401
from methods import erm, lff, jtt, dfa, lc, dpr, pgd, groupdro
from methods.base import Batch, Method, RunContext, Sampling, Stage, TrainView
from methods.registry import METHODS

__all__ = ["METHODS", "Batch", "Method", "RunContext", "Sampling", "Stage", "TrainView"]
