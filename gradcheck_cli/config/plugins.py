"""``plugins:``: the only way a config brings in code.

An entry ending in ``.py`` or containing ``/`` is a file relative to the config's folder,
imported under a fresh module name (its folder is on ``sys.path`` only while it imports,
so it can import its siblings); any other entry is a module name for ``import_module``.
While a plugin imports, the registry records it as the origin of what it registers, and
Python writes no bytecode (no ``__pycache__`` appears beside the user's files). A plugin
must register a layer or loss or define a function (cs231n-style function pairs need no
registration: ``type: functions`` names them); every module imported is kept on the
context, where function names resolve.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import itertools
import os
import re
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from .. import protocol
from .context import Context, join, resolve
from .files import not_regular, nul_in
from .suggest import show
from .yamlload import line_of

_counter = itertools.count(1)


def load_plugins(value: Any, doc: Any, ctx: Context) -> bool:
    """Import every plugin entry; return True when all of them loaded cleanly."""
    if value is None:
        return True
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, (list, tuple)):
        ctx.add(
            "plugins",
            line_of(doc, "plugins"),
            f"must be a list of plugin files or module names like [my_layers.py], "
            f"got {show(value)}",
        )
        return False
    ok = True
    for k, entry in enumerate(entries):
        path = join("plugins", k) if entries is value else "plugins"
        line = line_of(value, k) if entries is value else line_of(doc, "plugins")
        if not isinstance(entry, str) or not entry.strip():
            ctx.add(
                path, line, f"must be a file like my_layers.py or a module name, got {show(entry)}"
            )
            ok = False
            continue
        message = _load_one(entry.strip(), ctx)
        if message:
            ctx.add(path, line, message)
            ok = False
    return ok


def _is_file(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or os.sep in entry


def _snapshot() -> dict[tuple[str, str], type]:
    return {
        **{("layer", n): c for n, c in protocol.LAYERS.items()},
        **{("loss", n): c for n, c in protocol.LOSSES.items()},
    }


def _load_one(entry: str, ctx: Context) -> str | None:
    """Import one plugin; return an issue message or None. A registration that
    replaces a type from elsewhere (a built-in, another plugin) is a warning."""
    before = _snapshot()
    origins = dict(protocol.ORIGINS)
    if _is_file(entry):
        if nul_in(entry):
            return f"plugin {entry!r} holds a NUL character, which no file name can"
        resolved = resolve(ctx.base_dir / entry)
        ctx.sources.append(resolved)
        why = not_regular(resolved)
        if why == "not found":
            return f"plugin file not found: {resolved} (paths are relative to the config's folder)"
        if why is not None and why.startswith("unreadable"):
            return f"plugin file {resolved} is {why}"
        if why is not None:
            return f"plugin {resolved} is {why}, not a Python file; name a .py file"
        with protocol.registering_from(str(resolved)):
            error, module = _import_file(resolved)
        module_name = None
        shown = str(resolved)
    else:
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", entry):
            return (
                f"{entry!r} is neither a .py file nor a module name; write my_layers.py "
                "(relative to this config) or package.module"
            )
        with protocol.registering_from(entry):
            error = _import_module(entry)
        module = sys.modules.get(entry)
        module_name = entry
        shown = entry
        if error and (ctx.base_dir / f"{entry}.py").is_file():
            error += f"; to load the file beside this config write {entry}.py"
    if error:
        return f"plugin {entry} failed to import: {error}"
    if not _registered_something(before, module_name) and not defined_functions(module):
        return (
            f"plugin {shown} registered no layer or loss and defines no function; decorate "
            "its classes with @gradcheck_cli.register_layer('name'), or name its functions "
            "in a layer of type: functions"
        )
    if module is not None:
        ctx.plugin_modules.append((shown, module))
    ctx.warnings.extend(_replaced(before, origins, shown))
    return None


def defined_functions(module: ModuleType | None) -> list[str]:
    """The names of the functions ``module`` defines itself (not those it imports)."""
    if module is None:
        return []
    return [
        name
        for name, value in vars(module).items()
        if inspect.isfunction(value) and value.__module__ == module.__name__
    ]


#: Built-in types that a plugin replaced in this process, (kind, name) -> the built-in
#: class: a plugin loaded again (each config load imports it afresh) still replaces it.
_SHADOWED: dict[tuple[str, str], type] = {}


def _replaced(
    before: dict[tuple[str, str], type], origins: dict[tuple[str, str], str], shown: str
) -> list[str]:
    """A warning for every type the plugin ``shown`` registered over a built-in or over
    another plugin's, naming both origins (a plugin imported again over its own earlier
    import replaces nothing new)."""
    warnings = []
    for key, cls in _snapshot().items():
        old = before.get(key)
        if old is None or old is cls:
            continue
        kind, name = key
        was, now = origins.get(key, "unknown"), protocol.ORIGINS.get(key, shown)
        builtin = old if was == "built-in" else _SHADOWED.get(key)
        if builtin is not None:
            _SHADOWED[key] = builtin
            where = f"the built-in {kind} {name!r} ({builtin.__module__}.{builtin.__qualname__})"
        elif was != now:
            where = f"the {kind} {name!r} from {was} ({old.__qualname__})"
        else:
            continue
        warnings.append(
            f"plugin {shown} registers {kind} type {name!r}, which replaces {where}; configs "
            f"that use type: {name} now get {cls.__qualname__} from {now}. Register it "
            "under a name of its own unless replacing it is the point"
        )
    return warnings


def _registered_something(before: dict[tuple[str, str], type], module_name: str | None) -> bool:
    after = _snapshot()
    if any(before.get(key) is not cls for key, cls in after.items()):
        return True
    # an already-imported module does not run again: look for its classes instead
    if module_name is not None:
        return any(
            cls.__module__ == module_name or cls.__module__.startswith(module_name + ".")
            for cls in after.values()
        )
    return False


def _describe_exception(err: BaseException, filename: str | None) -> str:
    text = f"{type(err).__name__}: {err}"
    if filename and not isinstance(err, SyntaxError):
        frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == filename]
        if frames:
            text += f" (at {Path(filename).name}:{frames[-1].lineno})"
    return text


def _import_file(path: Path) -> tuple[str | None, ModuleType | None]:
    """(an error message, None), or (None, the module imported)."""
    stem = re.sub(r"\W", "_", path.stem)
    module_name = f"gradcheck_plugin_{stem}_{next(_counter)}"
    folder = str(path.parent)
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            return f"cannot import {path} as a Python module", None
        module = importlib.util.module_from_spec(spec)
    except Exception as err:
        return _describe_exception(err, None), None
    sys.modules[module_name] = module
    sys.path.insert(0, folder)
    try:
        with _no_bytecode():
            spec.loader.exec_module(module)
    except (Exception, SystemExit) as err:
        sys.modules.pop(module_name, None)
        return _describe_exception(err, str(path)), None
    finally:
        with contextlib.suppress(ValueError):  # the plugin may have removed it itself
            sys.path.remove(folder)
    return None, module


@contextlib.contextmanager
def _no_bytecode() -> Iterator[None]:
    """Import without writing ``.pyc`` files: gradcheck writes only what it is asked to."""
    before = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        sys.dont_write_bytecode = before


def _import_module(name: str) -> str | None:
    try:
        with _no_bytecode():
            importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and (name == err.name or name.startswith(err.name + ".")):
            return f"no module named {err.name!r} (is it installed in this environment?)"
        return _describe_exception(err, None)
    except (Exception, SystemExit) as err:
        return _describe_exception(err, None)
    return None
