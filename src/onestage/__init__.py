"""onestage: build, train, evaluate and ship one-stage object detectors."""

__version__ = "0.1.0"
