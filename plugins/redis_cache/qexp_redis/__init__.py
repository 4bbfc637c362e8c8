"""qexp plugin qexp_redis: a cache store in Redis shared by processes on several machines."""
