"""Tuning studies on Optuna (`onestage tune`): a search space over config keys (`space`), and a
study whose trials are ordinary training runs, spread over any number of workers (`study`)."""
