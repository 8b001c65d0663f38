"""Batched inference with test-time augmentation over interchangeable backends."""
