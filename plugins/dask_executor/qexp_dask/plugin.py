"""Entry point of qexp_dask: it registers nothing yet."""
