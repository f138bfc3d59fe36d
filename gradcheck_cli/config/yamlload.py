"""A safe YAML loader that remembers where every key and list item was written.

Mappings load as :class:`YMap` and sequences as :class:`YSeq`: plain ``dict``/``list``
subclasses carrying 1-based line numbers, so a config error can name the line. Only the
safe YAML tags are constructed; ``!!python/...`` tags are refused and nothing runs.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import ConfigError, ConfigIssue
from .context import join

# libyaml's parser also records marks, so it keeps the lines and is faster.
_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YMap(dict):
    """A mapping from YAML: ``line`` of the mapping itself, ``key_lines[key]`` of each key.

    ``duplicates`` lists ``(key, line, first_line)`` for keys written twice;
    ``value_texts[key]`` is a scalar value's text as written (``0.3116``, ``3.116e-1``),
    so that a hand-derived number can be compared to the decimals it was written with.
    """

    line: int | None = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.key_lines: dict[Any, int] = {}
        self.duplicates: list[tuple[Any, int, int]] = []
        self.value_texts: dict[Any, str] = {}


class YSeq(list):
    """A sequence from YAML: ``line`` of the sequence, ``item_lines[k]`` of item ``k``,
    ``item_texts[k]`` its text as written when it is a scalar (else None)."""

    line: int | None = None

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.item_lines: list[int] = []
        self.item_texts: list[str | None] = []


def written_text(container: object, key: object) -> str | None:
    """The text a scalar ``container[key]`` was written with in the YAML, else None
    (a nested value, or a plain dict or list from the Python API)."""
    if isinstance(container, YMap):
        return container.value_texts.get(key)
    if isinstance(container, YSeq) and isinstance(key, int):
        return container.item_texts[key] if 0 <= key < len(container.item_texts) else None
    return None


#: ``line_of``'s "no key given": a YAML key may itself be null (``null: 3``).
_CONTAINER = object()


def line_of(container: object, key: object = _CONTAINER) -> int | None:
    """The line of ``container[key]`` (key or list index), else of the container itself.

    Plain dicts and lists (the Python API) carry no lines: the answer is then None.
    """
    if key is not _CONTAINER:
        if isinstance(container, YMap) and key in container.key_lines:
            return container.key_lines[key]
        if (
            isinstance(container, YSeq)
            and isinstance(key, int)
            and 0 <= key < len(container.item_lines)
        ):
            return container.item_lines[key]
    return getattr(container, "line", None)


class LineLoader(_Base):  # type: ignore[misc, valid-type]
    """``yaml.SafeLoader`` whose mappings and sequences record their lines."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A value that its explicit tag cannot hold (``!!int abc``, ``!!float``,
        ``!!timestamp 2001-13-45``) is a YAML error at its line, not a crash."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, LookupError, TypeError, OverflowError) as err:
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            value = node.value if isinstance(node, yaml.ScalarNode) else node.id
            raise yaml.constructor.ConstructorError(
                None, None, f"{value!r} is not a valid {tag} value ({err})", node.start_mark
            ) from None


def _expect_node(node: yaml.Node, kind: type, what: str) -> None:
    """``!!map 0`` or ``!!seq {}``: a tag that does not fit its node is a YAML error."""
    if not isinstance(node, kind):
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"expected {what} after the tag {str(node.tag).replace('tag:yaml.org,2002:', '!!')}",
            node.start_mark,
        )


def _construct_map(loader: LineLoader, node: yaml.MappingNode):
    _expect_node(node, yaml.MappingNode, "a mapping")
    data = YMap()
    data.line = node.start_mark.line + 1
    yield data
    own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)
    first_own = len(node.value) - own  # merged (<<) pairs come first and may be overridden
    for k, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=False)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unhashable key (a list or mapping used as a key)",
                key_node.start_mark,
            ) from None
        line = key_node.start_mark.line + 1
        if k >= first_own and key in data.key_lines and data.key_lines[key] >= 0:
            data.duplicates.append((key, line, data.key_lines[key]))
        data[key] = loader.construct_object(value_node, deep=False)
        if isinstance(value_node, yaml.ScalarNode):
            data.value_texts[key] = value_node.value
        else:
            data.value_texts.pop(key, None)
        # merged keys get a negative mark so overriding them is not a duplicate
        data.key_lines[key] = line if k >= first_own else -line
    for key, line in data.key_lines.items():
        data.key_lines[key] = abs(line)


def _construct_seq(loader: LineLoader, node: yaml.SequenceNode):
    _expect_node(node, yaml.SequenceNode, "a sequence")
    data = YSeq()
    data.line = node.start_mark.line + 1
    data.item_lines = [child.start_mark.line + 1 for child in node.value]
    data.item_texts = [
        child.value if isinstance(child, yaml.ScalarNode) else None for child in node.value
    ]
    yield data
    data.extend(loader.construct_object(child, deep=False) for child in node.value)


LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _hint(problem: str, context: str, line_text: str) -> str:
    if "\t" in line_text and ("cannot start any token" in problem or "tab" in problem):
        return "; indent with spaces, not tabs"
    if "expected ','" in problem:
        return "; check that every [ and { is closed and items are separated by commas"
    if "mapping values are not allowed" in problem:
        return "; put a space after each ':' and quote values that contain ': '"
    if "single document" in context:
        return "; a config is one document (remove the extra '---')"
    if "indentation" in problem or "block end" in problem or "'-' indicator" in problem:
        return "; check the indentation (spaces only, the same amount for siblings)"
    return ""


def _yaml_issue(file: str, text: str, err: yaml.YAMLError) -> ConfigIssue:
    if isinstance(err, yaml.reader.ReaderError):  # a character YAML does not allow
        line = text.count("\n", 0, err.position) + 1
        char = err.character if isinstance(err.character, str) else chr(err.character)
        return ConfigIssue(
            file,
            line,
            "",
            f"invalid YAML: the character {char!r} (U+{ord(char):04X}) is not allowed in a "
            "YAML file; remove it"
            + (" (a NUL byte often means the file is not text)" if char == "\0" else ""),
        )
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = str(getattr(err, "problem", "") or err).strip()
    if "could not determine a constructor for the tag" in problem:
        tag = problem.split("tag", 1)[1].strip().strip("'")
        tag = tag.replace("tag:yaml.org,2002:", "!!")
        return ConfigIssue(
            file,
            line,
            "",
            f"the YAML tag {tag} is not allowed: configs are read with a safe loader that "
            "never runs code; load custom code with `plugins: [file.py]` instead",
        )
    context = str(getattr(err, "context", None) or "")
    context_mark = getattr(err, "context_mark", None)
    lines = text.splitlines()
    line_text = lines[line - 1] if line is not None and 0 < line <= len(lines) else ""
    message = f"{context}, {problem}" if context else problem
    if context.startswith("while parsing a flow") and context_mark is not None:
        message += f" (the bracket opened on line {context_mark.line + 1})"
    return ConfigIssue(
        file, line, "", f"invalid YAML: {message}{_hint(problem, context, line_text)}"
    )


def duplicate_issues(doc: object, file: str) -> list[ConfigIssue]:
    """Every key written twice in one mapping of the loaded tree (the later one wins)."""
    issues: list[ConfigIssue] = []
    _duplicates(doc, "", file, issues)
    return issues


def _duplicates(
    doc: object, path: str, file: str, issues: list[ConfigIssue], seen: set[int] | None = None
) -> None:
    # An alias (*a) shares its node: visit each node once, or a "billion laughs"
    # document of nested aliases would take exponential time.
    seen = set() if seen is None else seen
    if isinstance(doc, (YMap, YSeq)):
        if id(doc) in seen:
            return
        seen.add(id(doc))
    if isinstance(doc, YMap):
        for key, line, first in doc.duplicates:
            where = join(path, key)
            issues.append(
                ConfigIssue(
                    file,
                    line,
                    where,
                    f"duplicate key {key!r} (first written on line {first}); keep only one of them",
                )
            )
        for key, value in doc.items():
            _duplicates(value, join(path, key), file, issues, seen)
    elif isinstance(doc, YSeq):
        for k, item in enumerate(doc):
            _duplicates(item, f"{path}[{k}]", file, issues, seen)


def load_yaml(text: str, file: str) -> YMap:
    """Parse one config document; raise ConfigError for anything but a mapping.

    Duplicate keys do not stop the load: see :func:`duplicate_issues`.
    """
    try:
        doc = yaml.load(text, Loader=LineLoader)  # noqa: S506 - LineLoader is a SafeLoader
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_issue(file, text, err)) from None
    except RecursionError:
        raise ConfigError(
            ConfigIssue(file, None, "", "the YAML is nested too deeply to read")
        ) from None
    if doc is None:
        raise ConfigError(
            ConfigIssue(
                file,
                None,
                "",
                "the config is empty; it needs at least `input:`, `layers:` and `loss:` "
                "(run `gradcheck init` for a starter config)",
            )
        )
    if not isinstance(doc, YMap):
        kind = "a list" if isinstance(doc, list) else f"the value {doc!r}"
        raise ConfigError(
            ConfigIssue(
                file,
                getattr(doc, "line", 1),
                "",
                f"the top level must be a mapping of keys (input:, layers:, loss:, ...), "
                f"got {kind}",
            )
        )
    return doc
