"""qexp_wandb: the Weights & Biases plugin of qexp.

- ``wandb://PROJECT?entity=E&mode=offline|online&store=URI&artifacts=true`` as a backend: a local qexp
  store keeps the record every read uses; each run is mirrored into its own W&B run.
- the same URI in ``qexp.init(uri=..., mirrors=["wandb://PROJECT"])``: mirror the runs of any backend.
- ``qexp runs sync-wandb``: upload offline W&B runs later.

wandb is imported at first use only; without it, choosing ``wandb://`` raises ``qexp.MissingExtraError``.
"""
