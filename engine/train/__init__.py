"""Train stage: teach a pair's autoencoder from two facesets (samples, losses, the loop, a benchmark)."""
