"""qexp plugin qexp_dask (work in progress: see its issue)."""
