"""Entry point of qexp_task_stores: it registers nothing yet."""
