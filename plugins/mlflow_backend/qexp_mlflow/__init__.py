"""qexp_mlflow: a built-in qexp plugin."""
