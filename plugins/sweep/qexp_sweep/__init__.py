"""qexp plugin qexp_sweep (work in progress: see its issue)."""
