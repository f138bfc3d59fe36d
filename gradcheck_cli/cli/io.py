"""Where output goes: consoles for humans, files for machines.

Consoles escape every control character that text from a config, a file name or a
plugin may hold (``gradcheck_cli/text.py``) and read ``COLUMNS`` with care.

Output files (reports, ``schema -o``, ``init``) are checked before any work is done and
written so that nothing else is harmed:

- a regular file is replaced atomically (a temporary file beside it, then a rename), so
  that readers see the old file or the new one; a symbolic link to one keeps the link
  and replaces the file it points to;
- anything else (``/dev/null``, ``/dev/stdout``, a FIFO, a terminal, a link to one of
  them) is written in place and never replaced: the device node or the link stays what
  it was. A FIFO is given FIFO_WAIT seconds for a reader to open it;
- a failed write (``/dev/full``: no space left) is an error (exit 2), never a success;
- no output ever replaces a file the command reads (a config, its arrays and plugins, a
  ``--plugin``), nor, without ``--force`` where a command offers it, an existing file
  that looks like one (``.yaml``, ``.yml``, ``.py``, ``.npy``, ``.npz``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import OutputError, UsageError
from ..text import printable

if TYPE_CHECKING:
    from rich.console import Console

#: Width for output that is not a terminal (CI logs, pipes) unless COLUMNS says otherwise.
PIPE_WIDTH = 120
#: Width when COLUMNS holds nonsense (0, -3, "wide", a width no terminal has).
FALLBACK_WIDTH = 80
#: COLUMNS values taken as a width; anything else is nonsense.
SANE_COLUMNS = range(20, 10_001)
#: Seconds an output FIFO is given for a reader to open it, before the write fails.
FIFO_WAIT = 5.0
#: Paths that name an open file of this process rather than a file (``/dev/stdout``,
#: ``/dev/fd/1``, ``/proc/self/fd/1``): always written in place.
DESCRIPTOR_PREFIXES = ("/proc/", "/dev/fd/", "/dev/std")

#: Files a report must never replace: what a check reads (config, arrays, plugins).
INPUT_SUFFIXES = frozenset({".yaml", ".yml", ".npy", ".npz", ".py"})


def make_console(stream: TextIO | None = None, *, no_color: bool = False) -> Console:
    """A rich Console on ``stream`` (default stdout), plain unless it may be colored.

    Plain means no ANSI codes at all (not even bold): with ``--no-color``, when NO_COLOR
    is set, or when the stream is not a terminal (rich's own detection, which honours
    FORCE_COLOR). Plain output also draws ASCII borders and symbols (``render/fit.py``):
    the console then tells renderers it is ASCII-only.
    """

    stream = sys.stdout if stream is None else stream
    plain = no_color or bool(os.environ.get("NO_COLOR"))
    columns = os.environ.get("COLUMNS")
    sane = columns is None or _columns(columns) is not None
    console = _safe_console_class()(
        file=stream,
        color_system=None if plain else "auto",
        highlight=False,
        emoji=False,
        markup=False,  # names from a config are text, never [markup]
        width=None if sane else FALLBACK_WIDTH,
    )
    if not console.is_terminal and columns is None:
        console.width = max(console.width, PIPE_WIDTH)
    # rich exits 1 when its reader goes away (`| head`), and 1 means "a gradient
    # disagrees": raise BrokenPipeError so that main() gives its own exit code
    console.on_broken_pipe = _broken_pipe  # type: ignore[method-assign]
    return console


def _broken_pipe() -> None:
    raise BrokenPipeError("the reader of gradcheck's output closed it early")


def _columns(value: str) -> int | None:
    """COLUMNS as a width, or None when it is nonsense."""
    try:
        width = int(value.strip())
    except ValueError:
        return None
    return width if width in SANE_COLUMNS else None


_SAFE_CONSOLE: Any = None


def _safe_console_class() -> Any:
    """A rich Console whose every text segment goes through ``printable`` as it is
    rendered: whatever a table cell, a warning or a title holds, only the console's own
    colour codes reach the terminal."""
    global _SAFE_CONSOLE
    if _SAFE_CONSOLE is None:
        from rich.console import Console
        from rich.segment import Segment

        class SafeConsole(Console):
            @property
            def encoding(self) -> str:  # type: ignore[override]
                # rich draws ASCII boxes when the encoding is not Unicode: plain
                # output (no colour) gets ASCII borders from every table
                return "ascii" if self.color_system is None else super().encoding

            def render(self, renderable, options=None):  # type: ignore[override]
                for segment in super().render(renderable, options):
                    text, style, control = segment
                    if control or not text:
                        yield segment
                    else:
                        yield Segment(printable(text, keep_newlines=True), style, control)

        _SAFE_CONSOLE = SafeConsole
    return _SAFE_CONSOLE


def check_writable(
    path: str,
    *,
    option: str,
    protect: Iterable[str] = (),
    inputs_suffixes: bool = True,
    hint: str = "write it elsewhere",
    inputs: str = "an input of this check (the config, its arrays or plugins)",
) -> None:
    """Refuse, before any work is done, an output path that cannot or must not be written.

    ``-`` (stdout) is always fine. Raises UsageError (exit 2) naming the option when the
    path holds a NUL character, is a folder, cannot be resolved (a symbolic link loop),
    is one of the files in ``protect`` (what the command reads), is an existing regular
    file that looks like an input of a check (unless ``inputs_suffixes`` is False: the
    command was given ``--force``), or cannot be written: a regular file needs a
    writable folder (it is replaced), anything else must itself be writable (it is
    written in place). ``inputs`` says what ``protect`` holds; ``hint`` ends the message
    about an input-like file.
    """
    if path == "-":
        return
    if "\0" in path:
        raise UsageError(f"{option} {printable(path)}: a path cannot hold a NUL character")
    shown = printable(path)
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):  # a symbolic link that points to itself
        raise UsageError(f"{option} {shown}: cannot be resolved (a symbolic link loop?)") from None
    if any(resolved == _resolved(p) for p in protect):
        raise UsageError(f"{option} {shown}: refusing to overwrite {inputs}")
    info = _stat(path)
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{option} {shown}: is a folder, not a file")
    if info is not None and not stat.S_ISREG(info.st_mode) or _names_a_descriptor(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"{option} {shown}: is not writable")
        return  # written in place: its folder does not matter
    if inputs_suffixes and info is not None and resolved.suffix.lower() in INPUT_SUFFIXES:
        raise UsageError(
            f"{option} {shown}: refusing to overwrite a {resolved.suffix} file "
            f"(configs, arrays and plugins are inputs); {hint}"
        )
    parent = resolved.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {shown}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {shown}: folder {str(parent)!r} is not writable")
    if info is not None and not os.access(resolved, os.W_OK):
        raise UsageError(f"{option} {shown}: file is not writable")


def _resolved(path: str) -> Path | None:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def _stat(path: str) -> os.stat_result | None:
    """The file ``path`` names, following links; None when there is none yet."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:  # a loop, a permission: let the write say what is wrong
        return None


def _names_a_descriptor(path: str) -> bool:
    """``/dev/stdout``, ``/dev/fd/N``, ``/proc/self/fd/N``, or a link through one: such a
    path names an open file of this process, which is written where it is."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links followed
        if current.startswith(DESCRIPTOR_PREFIXES):
            return True
        try:
            target = os.readlink(current)
        except OSError:
            return False
        current = os.path.normpath(os.path.join(os.path.dirname(current), target))
    return False


def same_file(a: str, b: str) -> bool:
    """Whether two output paths end up in one place (``-`` is stdout)."""
    if a == "-" or b == "-":
        return a == b or is_stdout(b if a == "-" else a)
    ra, rb = _resolved(a), _resolved(b)
    if ra is not None and ra == rb:
        return True
    sa, sb = _stat(a), _stat(b)
    return sa is not None and sb is not None and (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def is_stdout(path: str) -> bool:
    """``-``, or a path that names this process's standard output (``/dev/stdout`` when
    stdout is a pipe or a terminal): its report then needs stdout to itself."""
    if path == "-":
        return True
    info = _stat(path)
    if info is None or stat.S_ISREG(info.st_mode) and not _names_a_descriptor(path):
        return False
    try:
        out = os.fstat(1)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == (out.st_dev, out.st_ino)


def write_output(path: str, text: str, *, option: str = "") -> None:
    """Write ``text`` (UTF-8) to ``path``: ``-`` is stdout, a regular file (or a link to
    one) is replaced atomically, anything else is written in place (module docstring).

    Raises UsageError (exit 2) naming ``option`` and the path when the write fails, also
    when it fails only at the end (no space left on ``/dev/full``).

    >>> write_output("-", "hello")
    hello
    """
    if path == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
        return
    if in_place(path):
        stream = open_in_place(path, option=option)
        try:
            stream.write(text)
        finally:
            stream.close()
        return
    try:
        _replace_atomically(os.path.realpath(path), text.encode("utf-8", "backslashreplace"))
    except OSError as e:
        raise OutputError(f"cannot write {_where(path, option)}: {e.strerror or e}") from e


def in_place(path: str) -> bool:
    """Whether ``path`` is written in place (module docstring), not replaced."""
    if path == "-":
        return True
    info = _stat(path)
    return (info is not None and not stat.S_ISREG(info.st_mode)) or _names_a_descriptor(path)


class InPlace:
    """An output written in place, opened before anything is written to it: a report to
    several streams can learn that one of them cannot be opened (a FIFO nobody reads)
    before any other is told the run passed."""

    def __init__(self, fd: int, where: str):
        self.fd = fd
        self.where = where

    def write(self, text: str) -> None:
        view = memoryview(text.encode("utf-8", "backslashreplace"))
        try:
            while view:
                view = view[os.write(self.fd, view) :]
            with contextlib.suppress(OSError):  # not every device can be synced
                os.fsync(self.fd)
        except OSError as e:
            raise OutputError(f"cannot write {self.where}: {e.strerror or e}") from e

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def open_in_place(path: str, *, option: str = "") -> InPlace:
    """Open what ``path`` names for writing, without creating, truncating or replacing
    anything. A FIFO waits up to FIFO_WAIT seconds for a reader (opening it for writing
    would otherwise block for ever). Raises UsageError naming ``option``."""
    where = _where(path, option)
    info = _stat(path)
    fifo = info is not None and stat.S_ISFIFO(info.st_mode)
    flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    deadline = time.monotonic() + FIFO_WAIT
    while True:
        try:
            fd = os.open(path, flags | os.O_NONBLOCK)
            break
        except OSError as e:
            if fifo and e.errno == errno.ENXIO and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            why = e.strerror or str(e)
            if fifo and e.errno == errno.ENXIO:
                why = f"no process opened the FIFO for reading within {FIFO_WAIT:g} s"
            raise OutputError(f"cannot write {where}: {why}") from None
    with contextlib.suppress(OSError):  # writes may then wait for a slow reader
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return InPlace(fd, where)


def _where(path: str, option: str) -> str:
    return f"{option} {printable(path)}" if option else printable(path)


#: The name code written before output files were told apart by kind.
write_atomic = write_output


def _replace_atomically(target: str, data: bytes) -> None:
    """A temporary file beside ``target``, flushed to disk, then moved over it with
    os.replace (atomic on POSIX). The new file keeps the old one's permissions, or gets
    the usual ones (0666 minus the umask); no temporary file is left behind."""
    folder, name = os.path.split(target)
    try:
        mode = os.stat(target).st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder or ".", prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        tmp = None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
