"""Reporting: records (results.jsonl) -> tables, plots and report.md, as pure functions of the records."""
