"""Drift evaluation: reference profiles, histograms, statistics, verdicts, the store."""
