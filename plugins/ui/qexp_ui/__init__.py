"""qexp_ui: ``qexp ui``, a web interface to browse, monitor and compare the runs of any qexp store."""
