"""Model-family specifics, kept out of the generic quantization code."""
