"""Engines that compose the library: training (`trainer` and the modules it is split into:
`step_loop`, `run_checkpoint`, `training_data`, `validation`, `train_process`, `train_settings`),
the predictor (`predictor`, `predict_folder`), evaluation (`evaluator`), `compare`, and the
optimiser, schedule, device and DDP helpers they share."""
