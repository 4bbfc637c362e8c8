"""qexp's version, on the ground floor so any module can read it without importing the package face."""
__version__ = "0.1.0"
