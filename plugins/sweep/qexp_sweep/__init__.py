"""qexp plugin qexp_sweep: ``qexp sweep`` on Optuna, trials as child runs on any executor."""
