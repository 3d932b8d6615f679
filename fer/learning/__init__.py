"""Learning: architectures, the data feed, the training loop, preprocessing and metrics."""
