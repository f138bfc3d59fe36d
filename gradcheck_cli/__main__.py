"""``python -m gradcheck_cli``: the same as the ``gradcheck`` command."""

import sys

from gradcheck_cli.exit_codes import ExitCode

try:
    from gradcheck_cli.launch import main
except KeyboardInterrupt:  # Ctrl-C while still starting up: no traceback either
    sys.stderr.write("gradcheck: interrupted\n")
    sys.exit(ExitCode.INTERRUPTED)

if __name__ == "__main__":
    main()
