"""``python -m gradcheck_cli``: the same as the ``gradcheck`` command."""

import sys

try:
    from gradcheck_cli.cli import main
except KeyboardInterrupt:  # Ctrl-C while still starting up: no traceback either
    sys.stderr.write("gradcheck: interrupted\n")
    sys.exit(130)

if __name__ == "__main__":
    main()
