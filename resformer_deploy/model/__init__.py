"""Model stage: configuration, variants, neurons, layers, the SpikingResformer, checkpoints, calibration."""
