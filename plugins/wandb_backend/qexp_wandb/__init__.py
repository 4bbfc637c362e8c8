"""qexp_wandb: a built-in qexp plugin."""
