"""Built-in executors: ``local`` (in this process, in order) and ``process://N`` (a pool on this machine)."""
