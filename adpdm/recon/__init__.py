"""Block-wise reconstruction (BRECQ-style) with learned rounding and timestep-group search."""
