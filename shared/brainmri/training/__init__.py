"""Training recipes, augmentation, batch mixing and the training loop."""
