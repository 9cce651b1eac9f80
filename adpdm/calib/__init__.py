"""Data-free calibration: inputs recorded from the FP sampler, and which steps to use."""
