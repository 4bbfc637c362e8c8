"""qexp_records: a built-in qexp plugin."""
