"""qexp_data: a built-in qexp plugin."""
