"""qexp plugin qexp_ui (work in progress: see its issue)."""
