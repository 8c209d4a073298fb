"""Debiasing methods behind one ``Method`` interface. Registering a method = one file + one import."""

from methods import erm  # noqa: F401  (registers "erm")
from methods.base import Batch, Method, RunContext, Stage, TrainView
from methods.registry import METHODS

__all__ = ["METHODS", "Batch", "Method", "RunContext", "Stage", "TrainView"]
