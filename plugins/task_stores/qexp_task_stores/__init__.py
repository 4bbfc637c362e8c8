"""qexp plugin qexp_task_stores (work in progress: see its issue)."""
