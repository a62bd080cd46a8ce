"""The choices and defaults of a tuning study, in a module that imports nothing: the command
line reads them without loading the config, YAML or Optuna."""

DEFAULT_OBJECTIVE = "val/mAP50-95"  # the results.csv column that scores a trial by default
DIRECTIONS = ("maximize", "minimize")  # the first is the default
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")
HEARTBEAT_S = 60  # a worker's trial is marked failed after two heartbeats missed
