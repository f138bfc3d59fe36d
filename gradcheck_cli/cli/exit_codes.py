"""The stable exit codes (contract section 1), and their text for ``--help``."""

from __future__ import annotations

OK = 0
DISAGREE = 1
INVALID = 2
NOT_CARRIED_OUT = 3
INTERNAL = 4
INTERRUPTED = 130
#: stdout closed early by its reader (`gradcheck run ... | head`): 128 + SIGPIPE, as shells report
BROKEN_PIPE = 141

EPILOG = """\b
Exit codes:
  0    every checked gradient and every expectation agrees
  1    at least one gradient or expectation disagrees
  2    the command line or the config is invalid
  3    the check could not be carried out (NaN/Inf in a forward pass,
       the loss or a gradient; a forward that is not deterministic)
  4    internal error, a bug in gradcheck (traceback with --debug)
  130  interrupted (Ctrl-C)
  141  the output's reader closed it early (gradcheck run ... | head)
"""
