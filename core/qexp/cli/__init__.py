"""The ``qexp`` command line."""
