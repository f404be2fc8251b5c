"""A small structural reader for Bicep text, for offline tests (no Bicep compiler on these machines).

It is not a Bicep parser. It knows exactly what the infra tests need and no more:

- comments are removed without touching ``//`` inside strings (``'https://...'``);
- ``resource`` and ``module`` declarations are found at the start of a line, with their type (or module
  path), API version, ``existing`` flag, ``if (...)`` condition, ``[for ... :`` loop header and the text
  of their object body, found by matching brackets outside strings;
- an object body splits into its top-level ``key: value`` entries (newline- or comma-separated), values
  kept as raw expression text; nested objects and arrays are read the same way on demand;
- ``param``, ``var`` and ``output`` declarations are read with their (possibly multi-line) expression.

Values stay as source text (``'TLS1_2'``, ``false``, ``identity.properties.clientId``): tests compare
them with the exact text they expect, so a reader mistake makes a test fail rather than pass.
pycep-parser (PyPI) is a fuller parser; the CI workflow runs it as a syntax check where it is installed,
but it cannot read filtered loops or ``.bicepparam`` files, and it is not a dependency of the test suite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

_OPEN = {"{": "}", "[": "]", "(": ")"}
_CLOSE = set(_OPEN.values())


def _skip_string(text: str, i: int) -> int:
    """Index just past the string literal starting at ``text[i] == "'"`` (``'...'`` or ``'''...'''``)."""
    if text.startswith("'''", i):
        end = text.find("'''", i + 3)
        if end < 0:
            raise ValueError(f"unterminated multi-line string at offset {i}")
        return end + 3
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == "'":
            return j + 1
        if text[j] == "\n":
            break
        j += 1
    raise ValueError(f"unterminated string at offset {i}")


def strip_comments(text: str) -> str:
    """``text`` with ``//`` and ``/* */`` comments blanked out (newlines kept, strings untouched)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "'":
            j = _skip_string(text, i)
            out.append(text[i:j])
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = len(text) if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise ValueError(f"unterminated block comment at offset {i}")
            out.append(re.sub(r"[^\n]", " ", text[i : j + 2]))
            i = j + 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def matching_close(text: str, i: int) -> int:
    """Index of the bracket closing the one at ``text[i]``, skipping strings."""
    stack = [_OPEN[text[i]]]
    j = i + 1
    while j < len(text):
        ch = text[j]
        if ch == "'":
            j = _skip_string(text, j)
            continue
        if ch in _OPEN:
            stack.append(_OPEN[ch])
        elif ch in _CLOSE:
            if ch != stack.pop():
                raise ValueError(f"mismatched {ch!r} at offset {j}")
            if not stack:
                return j
        j += 1
    raise ValueError(f"unclosed {text[i]!r} at offset {i}")


def _find_outside(text: str, start: int, targets: str) -> int | None:
    """Offset of the first of ``targets`` at or after ``start`` outside brackets and strings, or ``None``."""
    j = start
    while j < len(text):
        ch = text[j]
        if ch == "'":
            j = _skip_string(text, j)
            continue
        if ch in _OPEN:
            j = matching_close(text, j) + 1
            continue
        if ch in targets:
            return j
        j += 1
    return None


def read_expression(text: str, start: int) -> tuple[str, int]:
    """The expression starting at ``start``: up to the first newline outside brackets (or the end)."""
    end = _find_outside(text, start, "\n")
    j = len(text) if end is None else end
    return text[start:j].strip(), j


def _split_outside(inner: str, separators: str) -> list[str]:
    """``inner`` cut at each of ``separators`` that stands outside brackets and strings (parts unstripped)."""
    parts: list[str] = []
    current: list[str] = []
    j = 0
    while j < len(inner):
        ch = inner[j]
        if ch == "'":
            k = _skip_string(inner, j)
            current.append(inner[j:k])
            j = k
            continue
        if ch in _OPEN:
            k = matching_close(inner, j) + 1
            current.append(inner[j:k])
            j = k
            continue
        if ch in separators:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        j += 1
    parts.append("".join(current))
    return parts


def split_top_level(inner: str) -> list[str]:
    """Entries of an object or array body: split at newlines and commas outside brackets and strings."""
    return [e for e in (part.strip() for part in _split_outside(inner, "\n,")) if e]


_KEY = re.compile(r"^(?:'(?P<quoted>[^']*)'|(?P<bare>[A-Za-z_][\w]*))\s*:\s*(?P<value>.*)$", re.DOTALL)


def parse_object(text: str) -> dict[str, str]:
    """Top-level ``key: value`` pairs of an object literal ``{ ... }`` (or of its inside)."""
    text = text.strip()
    if text.startswith("{"):
        if matching_close(text, 0) != len(text) - 1:
            raise ValueError("not a single object literal")
        text = text[1:-1]
    result: dict[str, str] = {}
    for entry in split_top_level(text):
        m = _KEY.match(entry)
        if not m:
            raise ValueError(f"not a key: value entry: {entry[:60]!r}")
        key = m.group("quoted") if m.group("quoted") is not None else m.group("bare")
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = m.group("value").strip()
    return result


def parse_array(text: str) -> list[str]:
    """Items of an array literal ``[ ... ]`` as raw expression text."""
    text = text.strip()
    if not text.startswith("[") or matching_close(text, 0) != len(text) - 1:
        raise ValueError(f"not an array literal: {text[:60]!r}")
    return split_top_level(text[1:-1])


def string_value(value: str) -> str | None:
    """The content of a plain string literal without interpolation, else ``None``."""
    m = re.fullmatch(r"'([^'\\$]*)'", value.strip())
    return m.group(1) if m else None


def call_args(expr: str, function: str) -> list[str] | None:
    """Arguments of ``function(...)`` when ``expr`` is exactly one such call, else ``None``."""
    expr = expr.strip()
    if not expr.startswith(function + "("):
        return None
    open_at = len(function)
    if matching_close(expr, open_at) != len(expr) - 1:
        return None
    return [a.strip() for a in _split_commas(expr[open_at + 1 : -1])]


def _split_commas(inner: str) -> list[str]:
    return _split_outside(inner, ",")


@dataclass(frozen=True)
class Declaration:
    """A ``resource`` or ``module`` declaration.

    Attributes:
        kind: ``"resource"`` or ``"module"``.
        symbol: the symbolic name.
        target: resource type (``Microsoft.Storage/storageAccounts``) or module path (``app/x.bicep``).
        api_version: for resources; ``""`` for modules.
        existing: declared with ``existing`` (a reference, not a deployment).
        condition: text inside ``if (...)``, or ``None``.
        loop: the ``for ... in ...`` header, or ``None``.
        body: the object literal, braces included.
    """

    kind: str
    symbol: str
    target: str
    api_version: str
    existing: bool
    condition: str | None
    loop: str | None
    body: str

    @cached_property
    def fields(self) -> dict[str, str]:
        """Top-level entries of the body."""
        return parse_object(self.body)

    def get(self, dotted: str) -> str | None:
        """Raw value at a dotted path through nested object literals (``properties.siteConfig.x``)."""
        value: str | None = self.body
        for part in dotted.split("."):
            if value is None or not value.strip().startswith("{"):
                return None
            value = parse_object(value).get(part)
        return value


_DECL = re.compile(
    r"^[ \t]*(?P<kind>resource|module)\s+(?P<symbol>\w+)\s+'(?P<target>[^'@]+)(?:@(?P<api>[^']+))?'"
    r"\s*(?P<existing>existing\s*)?=\s*",
    re.MULTILINE,
)
_LOOP = re.compile(r"\[\s*(?P<header>for\s+.+?\s+in\s+)", re.DOTALL)


class BicepFile:
    """The declarations of one ``.bicep`` (or ``.bicepparam``) file, comments removed."""

    def __init__(self, text: str, path: Path | None = None) -> None:
        self.path = path
        self.text = strip_comments(text)

    @classmethod
    def load(cls, path: Path) -> BicepFile:
        """Read and index ``path``."""
        return cls(path.read_text(encoding="utf-8"), path)

    @cached_property
    def declarations(self) -> list[Declaration]:
        """Every resource and module declaration, in source order."""
        found: list[Declaration] = []
        for m in _DECL.finditer(self.text):
            i = m.end()
            condition = loop = None
            if self.text.startswith("if", i):
                paren = self.text.index("(", i)
                close = matching_close(self.text, paren)
                condition = self.text[paren + 1 : close].strip()
                i = close + 1
            rest = self.text[i:].lstrip()
            i = len(self.text) - len(rest)
            if rest.startswith("["):
                array_close = matching_close(self.text, i)
                loop_match = _LOOP.match(self.text, i)
                if not loop_match:
                    raise ValueError(f"{m.group('symbol')}: array without a for loop")
                # The iterated expression may itself hold brackets: read it as one expression.
                expr, after = _read_until_colon(self.text, loop_match.end())
                loop = loop_match.group("header").strip() + " " + expr
                body_start = self.text.index("{", after)
                if self.text[after:body_start].strip().startswith("if"):
                    paren = self.text.index("(", after)
                    close = matching_close(self.text, paren)
                    condition = self.text[paren + 1 : close].strip()
                    body_start = self.text.index("{", close)
                body_end = matching_close(self.text, body_start)
                if body_end > array_close:
                    raise ValueError(f"{m.group('symbol')}: loop body escapes its array")
            else:
                body_start = i
                if not rest.startswith("{"):
                    raise ValueError(f"{m.group('symbol')}: expected an object body")
                body_end = matching_close(self.text, body_start)
            found.append(
                Declaration(
                    kind=m.group("kind"),
                    symbol=m.group("symbol"),
                    target=m.group("target"),
                    api_version=m.group("api") or "",
                    existing=bool(m.group("existing")),
                    condition=condition,
                    loop=loop,
                    body=self.text[body_start : body_end + 1],
                )
            )
        return found

    def resources(self, type_: str | None = None) -> list[Declaration]:
        """Resource declarations, optionally of one type (case-insensitive)."""
        return [
            d
            for d in self.declarations
            if d.kind == "resource" and (type_ is None or d.target.lower() == type_.lower())
        ]

    def modules(self) -> list[Declaration]:
        """Module declarations."""
        return [d for d in self.declarations if d.kind == "module"]

    def symbol(self, name: str) -> Declaration | None:
        """The declaration with symbolic name ``name``."""
        return next((d for d in self.declarations if d.symbol == name), None)

    def _named(self, keyword: str, typed: bool) -> dict[str, tuple[str | None, str | None]]:
        """``name -> (type, expression or None)`` for ``param``/``var``/``output`` lines."""
        type_part = r"\s+(?P<type>\w+)" if typed else ""
        pattern = re.compile(rf"^[ \t]*{keyword}\s+(?P<name>\w+){type_part}(?P<eq>\s*=\s*)?", re.MULTILINE)
        result: dict[str, tuple[str | None, str | None]] = {}
        for m in pattern.finditer(self.text):
            value = read_expression(self.text, m.end())[0] if m.group("eq") else None
            result[m.group("name")] = (m.groupdict().get("type"), value)
        return result

    @cached_property
    def params(self) -> dict[str, tuple[str | None, str | None]]:
        """``param`` declarations: ``name -> (type, default or None)``.

        In a ``.bicepparam`` file (no type) the value is the assignment.
        """
        typed = self.path is None or self.path.suffix != ".bicepparam"
        return self._named("param", typed)

    @cached_property
    def variables(self) -> dict[str, str]:
        """``var`` declarations: ``name -> expression``."""
        return {name: value or "" for name, (_, value) in self._named("var", False).items()}

    @cached_property
    def outputs(self) -> dict[str, tuple[str | None, str | None]]:
        """``output`` declarations: ``name -> (type, expression)``."""
        return self._named("output", True)


def _read_until_colon(text: str, start: int) -> tuple[str, int]:
    """Read a ``for`` loop's iterated expression up to its ``:`` (outside brackets and strings)."""
    colon = _find_outside(text, start, ":")
    if colon is None:
        raise ValueError("for loop without ':'")
    return text[start:colon].strip(), colon + 1
