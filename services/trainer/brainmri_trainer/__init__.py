"""Trainer service: training jobs on their own queue, gated promotion, scheduled retraining."""
