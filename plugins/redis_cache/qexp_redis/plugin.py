"""Entry point of qexp_redis: it registers nothing yet."""
