"""Metrics, calibration, plots and evaluation reports."""
