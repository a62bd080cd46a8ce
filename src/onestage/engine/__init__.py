"""Engines that compose the library: training (and later evaluation and prediction)."""
