"""Readers of user files with a bound on the work they may cause.

Why: a file the user drops in (or a hostile one) must give a result or a one-line
error, never a hang, an out-of-memory kill or a traceback. The classic traps:
a YAML "billion laughs" (aliases of aliases expand to 10^9 nodes), JSON nested
100k deep (recursion), a regex with catastrophic backtracking, an image that
decodes to gigapixels. Each has one bounded entry point here.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError, ImageLimitError, LimitError

YAML_MAX_NODES = 100_000  # expanded (aliases counted each time they are used); project.yaml has ~300
YAML_MAX_DEPTH = 64
JSON_MAX_DEPTH = 500  # below Python's recursion limit, far above any COCO/labelme/prediction file
REGEX_MAX_SECONDS = 1.0
REGEX_MAX_SUBJECT = 4096
DEFLATE_MAX_RATIO = 1032  # deflate's best case: a 258-byte match coded in ~2 bits (RFC 1951)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_HEAD_BYTES = 33  # signature + IHDR chunk: all png_min_bytes needs


# ----------------------------------------------------------------------------- YAML


def _yaml_where(source: str, node: yaml.Node) -> str:
    return f"{source}:{node.start_mark.line + 1}"


def check_yaml_node(node: yaml.Node | None, source: str, max_nodes: int = YAML_MAX_NODES,
                    max_depth: int = YAML_MAX_DEPTH) -> None:
    """Refuse a composed YAML document whose expansion is too big or too deep, or whose mapping
    repeats a key (YAML says keys are unique; PyYAML silently keeps the last one, so a second
    `classes:` would hide the first from a reader and not from an editor)."""
    if node is None:
        return
    sizes: dict[int, int] = {}
    # iterative post-order walk; sizes are memoised per node, so shared (aliased) nodes cost once
    stack: list[tuple[yaml.Node, int, bool]] = [(node, 1, False)]
    on_path: set[int] = set()
    while stack:
        n, depth, expanded = stack.pop()
        if id(n) in sizes:
            continue
        if depth > max_depth:
            raise LimitError(f"{_yaml_where(source, n)}: nested deeper than {max_depth} levels")
        kids = _children(n)
        if not expanded:
            if id(n) in on_path:
                raise LimitError(f"{_yaml_where(source, n)}: a recursive alias (refers to itself)")
            on_path.add(id(n))
            stack.append((n, depth, True))
            stack.extend((k, depth + 1, False) for k in kids if id(k) not in sizes)
            continue
        on_path.discard(id(n))
        total = 1 + sum(sizes.get(id(k), 1) for k in kids)
        if total > max_nodes:
            raise LimitError(f"{_yaml_where(source, n)}: expands to more than {max_nodes} values "
                             f"(aliases of aliases, a 'billion laughs' file?)")
        sizes[id(n)] = total
        if isinstance(n, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, _ in n.value:
                if isinstance(k, yaml.ScalarNode):
                    if k.value in seen and k.value != "<<":
                        raise ConfigError(f"{source}:{k.start_mark.line + 1}: key {k.value!r} is repeated "
                                          f"(first at line {seen[k.value]}); keep one")
                    seen[k.value] = k.start_mark.line + 1


def _children(n: yaml.Node) -> list[yaml.Node]:
    if isinstance(n, yaml.SequenceNode):
        return list(n.value)
    if isinstance(n, yaml.MappingNode):
        return [x for kv in n.value for x in kv]
    return []


def compose_yaml(text: str, source: str) -> yaml.Node | None:
    """yaml.compose with the bounds of :func:`check_yaml_node` (YAMLError passes through)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise LimitError(f"{source}: nested too deeply to read") from None
    check_yaml_node(node, source)
    return node


def load_yaml(text: str, source: str) -> Any:
    """yaml.safe_load, refusing what :func:`check_yaml_node` refuses (YAMLError passes through)."""
    node = compose_yaml(text, source)
    if node is None:
        return None
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    except RecursionError:
        raise LimitError(f"{source}: nested too deeply to read") from None
    finally:
        loader.dispose()


# ----------------------------------------------------------------------------- JSON


def _depth_ok(text: str, max_depth: int) -> int | None:
    """Offset where bracket nesting first passes ``max_depth`` (strings skipped), else None.
    A regex over the brackets and strings keeps this fast on 100 MB COCO files."""
    depth = 0
    for m in _JSON_TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > max_depth:
                return m.start()
        elif c in "]}":
            depth -= 1
    return None


_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def loads_json(data: str | bytes, source: Path | str, max_depth: int = JSON_MAX_DEPTH) -> Any:
    """json.loads with a nesting bound: too deep -> LimitError naming the file and offset.
    Other syntax errors pass through as ValueError (callers already report those)."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    if text.count("[") + text.count("{") > max_depth:  # cheap pre-check: only then scan
        where = _depth_ok(text, max_depth)
        if where is not None:
            line = text.count("\n", 0, where) + 1
            raise LimitError(f"{source}:{line}: JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except RecursionError:
        raise LimitError(f"{source}: JSON nested too deeply to read") from None


# ----------------------------------------------------------------------------- images


def check_image_pixels(source: Path | str, width: int, height: int, limit: int, setting: str) -> None:
    """Refuse, from the header, an image whose decode would be ``width x height`` pixels over
    ``limit`` (``setting`` is the environment variable that raises it)."""
    if width * height > limit:
        raise ImageLimitError(f"{source}: image too large to decode ({width}x{height} = {width * height:,} "
                              f"pixels, limit {limit:,}; raise {setting} if you have the memory)")


def png_min_bytes(head: bytes) -> int | None:
    """Fewest bytes a complete PNG with this IHDR can have (its filtered rows deflated at
    deflate's best ratio); None when ``head`` is not a PNG signature + IHDR."""
    if len(head) < PNG_HEAD_BYTES or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    width, height, depth, color_type = struct.unpack(">IIBB", head[16:26])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color_type)
    if channels is None:
        return None
    row = 1 + (width * depth * channels + 7) // 8  # filter byte + packed samples
    return height * row // DEFLATE_MAX_RATIO


def check_image_bytes(source: Path | str, width: int, height: int, head: bytes, size: int) -> None:
    """Refuse a file too small to hold the pixels its header claims: a truncated file or a
    decompression bomb, refused before a decoder allocates ``width x height`` for it."""
    need = png_min_bytes(head)
    if need is not None and size < need:
        raise ImageLimitError(f"{source}: header claims {width}x{height} pixels but the file has only {size:,} "
                              f"bytes (a complete PNG that size has at least {need:,}): truncated, or a "
                              "decompression bomb")


# ----------------------------------------------------------------------------- regex


def compile_user_regex(pattern: str, source: str):
    """Compile a user's regex for bounded matching: the `regex` module supports a per-call
    timeout, so a catastrophic pattern ('^(a+)+$') fails with a message instead of hanging."""
    import regex

    try:
        return regex.compile(pattern, flags=regex.VERSION0)
    except regex.error as exc:
        raise ConfigError(f"{source}: not a valid regular expression {pattern!r}: {exc}") from None


def search_user_regex(compiled, text: str, source: str, timeout: float = REGEX_MAX_SECONDS):
    """compiled.search(text) with a time bound (LimitError names the pattern and the text)."""
    if len(text) > REGEX_MAX_SUBJECT:
        raise LimitError(f"{source}: text longer than {REGEX_MAX_SUBJECT} characters for pattern "
                         f"{compiled.pattern!r}: {text[:60]!r}...")
    try:
        return compiled.search(text, timeout=timeout)
    except TimeoutError:
        raise LimitError(f"{source}: pattern {compiled.pattern!r} took over {timeout:g} s on {text!r} "
                         f"(catastrophic backtracking?); simplify it, e.g. '(a+)+' -> 'a+'") from None


# ----------------------------------------------------------------------------- regular files

STATE_MAX_BYTES = 512 << 20  # journals hold old+new text of every label file a class edit touched


def _kind(mode: int) -> str:
    import stat

    for test, name in ((stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISDIR, "folder"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def read_regular_bytes(path: Path | str, max_bytes: int | None = STATE_MAX_BYTES) -> bytes:
    """The bytes of a regular file, or LimitError naming the path.

    Why: ``open()`` on a FIFO blocks until a writer appears (a hang), a character device such as
    /dev/zero never ends; opening non-blocking and checking fstat before any read makes both a
    one-line error. FileNotFoundError passes through (callers decide what absent means)."""
    import stat

    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):  # callers already word this case (e.g. "not a label file")
            raise IsADirectoryError(21, "Is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise LimitError(f"{path}: is a {_kind(st.st_mode)}, not a regular file; refusing to read it")
        if max_bytes is not None and st.st_size > max_bytes:
            raise LimitError(f"{path}: {st.st_size:,} bytes, over the {max_bytes:,}-byte limit for this file")
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_regular_text(path: Path | str, max_bytes: int | None = STATE_MAX_BYTES) -> str:
    """:func:`read_regular_bytes` decoded as UTF-8 (a BOM is dropped); bad bytes -> ConfigError."""
    data = read_regular_bytes(path, max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start})") from None


def load_json_file(path: Path | str, expect: type | tuple[type, ...] = dict,
                   max_bytes: int | None = STATE_MAX_BYTES) -> Any:
    """A JSON state file through every bound: regular file, size, depth, syntax and top-level type.
    Any failure is a UserFacingError naming the file (FileNotFoundError passes through)."""
    text = read_regular_text(path, max_bytes)
    try:
        data = loads_json(text, path)
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        raise ConfigError(f"{path}" + (f":{line}" if line else "") + f": not valid JSON ({exc})") from None
    if not isinstance(data, expect):
        json_name = {dict: "an object", list: "an array", str: "a text", int: "a number", float: "a number"}
        kinds = expect if isinstance(expect, tuple) else (expect,)
        want = " or ".join(json_name.get(t, t.__name__) for t in kinds)
        got = "null" if data is None else json_name.get(type(data), type(data).__name__)
        raise ConfigError(f"{path}: expected {want} at the top level, got {got}")
    return data
