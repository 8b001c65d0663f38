"""Celery worker service: runs prediction and evaluation jobs on the production model."""
