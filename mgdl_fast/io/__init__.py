"""Files in and out: images, checkpoints, the run directory, figures of training curves, and
the environment record with the commit."""
