"""Entry point of qexp_sweep: it registers nothing yet."""
