"""Corpus-scale ALTI: one row per example of a JSONL/CSV/Parquet/`datasets` input, written as a
Parquet dataset (see `run`)."""
