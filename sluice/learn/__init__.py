"""Learn: matrices, model families, evaluation, the gate, training, tuning and the registry."""
