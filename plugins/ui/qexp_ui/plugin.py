"""Entry point of qexp_ui: it registers nothing yet."""
