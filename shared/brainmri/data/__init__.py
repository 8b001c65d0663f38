"""Class names, dataset building (duplicate-aware splits) and torch datasets."""
