"""Evaluation: multi-label metrics, thresholds, frequency deciles."""
