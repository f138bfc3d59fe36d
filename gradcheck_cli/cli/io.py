"""Where output goes: consoles for humans, atomic files for machines."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

#: Width for output that is not a terminal (CI logs, pipes) unless COLUMNS says otherwise.
PIPE_WIDTH = 120

#: Files a report must never replace: what a check reads (config, arrays, plugins).
INPUT_SUFFIXES = frozenset({".yaml", ".yml", ".npy", ".npz", ".py"})


def make_console(stream: TextIO | None = None, *, no_color: bool = False) -> Console:
    """A rich Console on ``stream`` (default stdout), plain unless it may be colored.

    Plain means no ANSI codes at all (not even bold): with ``--no-color``, when NO_COLOR
    is set, or when the stream is not a terminal (rich's own detection, which honours
    FORCE_COLOR).
    """
    from rich.console import Console

    stream = sys.stdout if stream is None else stream
    plain = no_color or bool(os.environ.get("NO_COLOR"))
    console = Console(
        file=stream,
        color_system=None if plain else "auto",
        highlight=False,
        emoji=False,
    )
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = max(console.width, PIPE_WIDTH)
    # rich exits 1 when its reader goes away (`| head`), and 1 means "a gradient
    # disagrees": raise BrokenPipeError so that main() gives its own exit code
    console.on_broken_pipe = _broken_pipe  # type: ignore[method-assign]
    return console


def _broken_pipe() -> None:
    raise BrokenPipeError("the reader of gradcheck's output closed it early")


def check_writable(path: str, *, option: str, protect: tuple[str, ...] = ()) -> None:
    """Refuse, before any work is done, a report path that cannot or must not be written.

    ``-`` (stdout) is always fine. Raises UsageError (exit 2) naming the option when the
    parent folder is missing or read-only or the path is a folder. With ``protect`` (the
    config of a check), also when the path is one of those files or an existing file that
    looks like an input of a check (.yaml, .npy, .npz, .py).
    """
    if path == "-":
        return
    target = Path(path)
    try:
        resolved = target.resolve()
    except (OSError, RuntimeError):  # a symbolic link that points to itself
        raise UsageError(f"{option} {path}: cannot be resolved (a symbolic link loop?)") from None
    if any(resolved == Path(p).resolve() for p in protect):
        raise UsageError(
            f"{option} {path}: refusing to overwrite an input of this check "
            "(the config, its arrays or plugins)"
        )
    if protect and target.exists() and resolved.suffix.lower() in INPUT_SUFFIXES:
        raise UsageError(
            f"{option} {path}: refusing to overwrite a {resolved.suffix} file "
            "(configs, arrays and plugins are inputs); write the report elsewhere"
        )
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a folder, not a file")
    parent = resolved.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: folder {str(parent)!r} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"{option} {path}: file is not writable")


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so that readers see the old file or the new one.

    A temporary file in the same folder is written, flushed to disk, then moved over
    ``path`` with os.replace (atomic on POSIX and Windows). The new file keeps the old
    one's permissions, or gets the usual ones (0666 minus the umask). ``-`` writes to
    stdout. Raises UsageError (exit 2) when the file cannot be written.

    >>> write_atomic("-", "hello")
    hello
    """
    if path == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
        return
    target = Path(path)
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        tmp = None
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
