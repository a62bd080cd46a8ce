"""onestage: build, train, evaluate and ship one-stage object detectors.

The public Python API, what the CLI itself uses:

    from onestage import Detector, evaluate, make_config, train
    result = train(make_config("fast", overrides={"epochs": 5}))
    detections = Detector.load(result.run_dir / "weights" / "best.safetensors").predict(image)
    scores = evaluate("seed_animals", synthetic=500)
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Detector", "evaluate", "make_config", "train"]

_EXPORTS = {
    "Detector": "onestage.engine.predictor",
    "evaluate": "onestage.engine.evaluator",
    "make_config": "onestage.config",
    "train": "onestage.engine.trainer",
}


def __getattr__(name: str) -> Any:
    """Import the API lazily, so `onestage --help` does not load torch."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'onestage' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
