"""qexp_models: a built-in qexp plugin."""
