"""qexp plugin qexp_dask: executors on Dask ``distributed`` (extra ``dask``)."""
