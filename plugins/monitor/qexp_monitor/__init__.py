"""qexp plugin qexp_monitor: MLflow-compatible system metrics (``system/*``) for every run."""
