"""Hyperparameter spaces, declared next to each default by methods and datasets alike: search
distributions for ``--hparams-seed`` (``spaces.distributions``) and the domain every value must lie in
(``spaces.domains``). The layer beneath ``methods`` and ``datasets``: it imports neither, nor ``bench``."""

from spaces.distributions import Choice, Distribution, IntUniform, LogUniform, Uniform
from spaces.domains import Domain, Interval, OneOf

__all__ = ["Choice", "Distribution", "Domain", "IntUniform", "Interval", "LogUniform", "OneOf", "Uniform"]
