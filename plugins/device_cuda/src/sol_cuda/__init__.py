"""sol's CUDA device plugin."""
