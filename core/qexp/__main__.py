"""``python -m qexp`` behaves like the ``qexp`` command."""
from qexp.cli.main import main

if __name__ == "__main__":
    main()
