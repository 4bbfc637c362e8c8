"""qexp plugin qexp_monitor (work in progress: see its issue)."""
