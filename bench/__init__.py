"""The benchmark engine: hyperparameter resolution, training loop, records, tables and the CLI."""
