"""Reporting: records (results.jsonl) -> tables, plots, significance, convergence and report.md, as pure
functions of the records."""
