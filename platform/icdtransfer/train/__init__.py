"""Training: batches, the loop shared by both stages, checkpoints, ensembles."""
