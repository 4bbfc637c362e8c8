"""qexp plugin qexp_redis (work in progress: see its issue)."""
