"""Entry point of qexp_monitor: it registers nothing yet."""
