"""qexp_file: a built-in qexp plugin."""
