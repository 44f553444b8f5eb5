"""Free-form ``§`` overrides: tokenising the unknown command-line tokens and applying them to the YAML and JSON.

``--model§latent_dim 64`` sets ``cfg["model"]["latent_dim"] = 64`` in the YAML config; ``--json§save_path /x`` sets a
key of the data JSON. Missing path components are created (with a warning when a close sibling exists, to catch
typos); a component that exists but is not a mapping is an error.

A value is typed by the key it sets, not by its text: the resolver tokenises with ``raw=True`` and passes a
``typer`` that knows the option types; without one, a value is typed like the value it replaces
(:func:`like_existing`), and a new key by its text (:func:`convert`). So ``--json§fulltrainID f`` stays the string
``"f"`` instead of becoming False.
"""

from __future__ import annotations

import ast
import difflib
import logging
import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

from Engineering.errors import ConfigError

log = logging.getLogger("imlatent")

SEP = "§"
JSON_PREFIX = "json§"
_TRUE_WORDS = {"yes", "true", "t", "y", "1"}
_FALSE_WORDS = {"no", "false", "f", "n", "0"}
_INT_RE = re.compile(r"[+-]?\d+")
_NUMBER_RE = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|-inf|-nan", re.IGNORECASE)
_LITERAL_OPENERS = ("[", "{", "(")
MISSING: Any = object()
"""``existing`` value of a typer call for a key that does not exist yet."""

#: (path, text, existing value or MISSING) -> typed value
Typer = Callable[[Sequence[str], str, Any], Any]


def convert(value: str, key: str = "") -> Any:
    """Convert one override value: int, then float, then a bool word, then a Python literal, else the string.

    ``key`` only names the override in the error raised for a malformed list/dict/tuple.
    """
    text = value.strip()
    if _INT_RE.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        pass
    if text.lower() in _TRUE_WORDS:
        return True
    if text.lower() in _FALSE_WORDS:
        return False
    if text == "None" or text.startswith(_LITERAL_OPENERS):
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
            raise ConfigError(
                f"override --{key}: value {value!r} looks like a Python list/dict/tuple but does not parse "
                f'({type(err).__name__}); quote it as a valid literal, e.g. "[1, 2]" or "{{\'dim1\': 30}}"'
            ) from None
    return value


def bool_word(text: str, key: str) -> bool:
    """``yes/true/t/y/1`` → True, ``no/false/f/n/0`` → False (any case); anything else is a ConfigError."""
    word = text.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ConfigError(f"--{key} {text!r}: expected true or false (yes/no, 1/0)")


def like_existing(path: Sequence[str], text: str, existing: Any) -> Any:
    """Type ``text`` like the value it replaces: a string stays text, a bool takes a bool word, a number a number;
    a new key, a list, a dict or None are typed by the text (:func:`convert`)."""
    key = SEP.join(path)
    if isinstance(existing, bool):
        return bool_word(text, key)
    if isinstance(existing, int | float):
        number = convert(text, key)
        if isinstance(number, int | float) and not isinstance(number, bool) or number is None:
            return number
        raise ConfigError(f"--{key} {text!r}: expected a number (the value it replaces is {existing!r})")
    if isinstance(existing, str):
        return text
    return convert(text, key)


def _bare_flag(name: str) -> tuple[str, bool]:
    """A flag given without a value: ``no-x`` → (x, False), ``x`` → (x, True)."""
    if name.startswith("no-"):
        return name[3:], False
    return name, True


def _is_negative_number(token: str) -> bool:
    return bool(_NUMBER_RE.fullmatch(token))


def _key_of(token: str, whole: str | None = None) -> str:
    key = token.lstrip("-")
    whole = token if whole is None else whole
    if not token.startswith("-"):
        log.warning("override token %r has no leading '-'; it is taken as a bare flag %s=True", token, key)
    if not key:
        raise ConfigError(f"override token {whole!r} has no key name; expected --key VALUE or --key=VALUE")
    return key


def tokenise(tokens: Sequence[str], raw: bool = False) -> dict[str, Any]:
    """Turn the tokens argparse did not recognise into an ordered ``{key: value}`` dict.

    ``--k v`` and ``--k=v`` give ``k: convert(v)`` (with ``raw`` the text ``v``, typed later by the key it sets);
    a bare ``--k`` gives True and ``--no-k`` gives False. A negative number after a key is that key's value.
    Keys keep their ``§`` separators and lose their leading dashes.
    """

    value_of: Callable[[str, str], Any] = (lambda text, key: text) if raw else convert
    result: dict[str, Any] = {}
    pending: str | None = None
    for token in tokens:
        if pending is not None:
            if token.startswith("-") and not _is_negative_number(token):
                flag, flag_value = _bare_flag(pending)
                result[flag] = flag_value
                pending = None
            else:
                result[pending] = value_of(token, pending)
                pending = None
                continue
        if "=" in token:
            raw_key, raw_value = token.split("=", 1)
            key = _key_of(raw_key, token)
            result[key] = value_of(raw_value, key)
        else:
            pending = _key_of(token)
    if pending is not None:
        flag, flag_value = _bare_flag(pending)
        result[flag] = flag_value
    return result


def _set_path(
    root: MutableMapping[str, Any], path: Sequence[str], value: Any, key: str, where: str, typer: Typer
) -> list[str]:
    """Set ``root[path[0]]...[path[-1]] = value``, creating missing mappings; return near-miss warnings.

    A text ``value`` is typed by ``typer`` from the path and the value it replaces.
    """
    if not path or any(part == "" for part in path):
        raise ConfigError(f"override --{key}: empty path component; expected names separated by '§'")
    warnings: list[str] = []
    node: Any = root
    for depth, part in enumerate(path):
        parent = SEP.join(path[:depth])
        if part not in node:
            siblings = [str(k) for k in node]
            close = difflib.get_close_matches(part, siblings, n=1, cutoff=0.8)
            if close:
                place = f"under {parent!r}" if parent else f"at the top level of the {where}"
                warnings.append(f"{key}: no such key {part!r} {place}; did you mean {close[0]!r}? creating it")
        if depth == len(path) - 1:
            node[part] = typer(path, value, node.get(part, MISSING)) if isinstance(value, str) else value
            break
        child = node.setdefault(part, {})
        if not isinstance(child, MutableMapping):
            here = SEP.join(path[: depth + 1])
            raise ConfigError(
                f"override --{key}: {where} key {here!r} holds {type(child).__name__} {child!r}, not a mapping; "
                f"cannot set {SEP.join(path[depth + 1 :])!r} inside it"
            )
        node = child
    for message in warnings:
        log.warning(message)
    return warnings


def apply_yaml_overrides(
    cfg: MutableMapping[str, Any], overrides: Mapping[str, Any], typer: Typer = like_existing
) -> list[str]:
    """Apply every override whose key does not start with ``json§`` to the YAML config, in order.

    Returns (and logs) a warning for each created key that has a close existing sibling.
    """
    warnings: list[str] = []
    for key, value in overrides.items():
        if not key.startswith(JSON_PREFIX):
            warnings += _set_path(cfg, key.split(SEP), value, key, "YAML config", typer)
    return warnings


def apply_json_overrides(
    js: MutableMapping[str, Any], overrides: Mapping[str, Any], typer: Typer = like_existing
) -> list[str]:
    """Apply every ``json§a§b`` override to the data JSON as the nested path ``a → b``, in order.

    Returns (and logs) a warning for each created key that has a close existing sibling.
    """
    warnings: list[str] = []
    for key, value in overrides.items():
        if key.startswith(JSON_PREFIX):
            warnings += _set_path(js, key[len(JSON_PREFIX) :].split(SEP), value, key, "data JSON", typer)
    return warnings
