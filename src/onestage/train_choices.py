"""The names a training choice takes where its implementation needs torch: optimisers, devices,
mixed precisions, run loggers, losses, loss terms and assigners.

This is their one home: `onestage.config` checks a config against them before a run writes
anything, and the modules that implement them (`engine.optim`, `engine.device`, `losses`) read
them from here. Importing this module loads nothing else (a config is checked before torch
loads), so the names are not in those modules themselves. Schedules are named in
`engine.schedule` and anchor configs in `priors.anchor_configs`, both torch-free.
"""

from __future__ import annotations

OPTIMIZERS = ("adam", "adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("auto", "none", "bf16", "fp16")  # mixed precision; "none" = fp32
RUN_LOGGERS = ("none", "tensorboard", "mlflow")  # `engine.run_logging`, beside results.csv
# The losses of anchor heads, as `losses.anchor` registers them, and the one loss of
# anchor-free heads (`losses.quality.QualityLoss`), all in `onestage.losses.LOSSES`.
ANCHOR_LOSSES = ("seed", "ssd", "focal")
POINT_LOSS = "quality"
BOX_LOSSES = ("smooth_l1", "giou")  # the box term of the ssd and focal losses
CLASS_TERMS = ("bce", "vfl", "qfl")  # the classification term of the quality loss
BOX_TERMS = ("ciou", "giou")  # the box term of the quality loss
ASSIGNER_NAMES = ("maxiou", "atss", "tal")  # "maxiou": the seed's rule, anchor heads only
