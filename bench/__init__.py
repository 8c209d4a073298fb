"""The benchmark engine: hyperparameter resolution, the sweep plan, device data, the training loop and its
in-run checkpoints, numerics, launchers, metrics and diagnostics, and the CLI with its subcommands
(``report``, ``list``, ``verify``, ``status`` of a sweep, ``trace`` of a run's arithmetic)."""
