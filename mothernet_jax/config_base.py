"""What every configuration shares: `ConfigBase` and `preset(registry, name, what)`.

`ModelConfig`, `priors.PriorConfig` and `TrainConfig` are frozen, keyword-only dataclasses that
derive from `ConfigBase`, which gives them `replace`, the dict and JSON round trip, the `key=value`
overrides of the CLI's `--set` (`with_overrides`) and the integer checks of their `__post_init__`.
Standard library only, so that `priors` imports it without JAX and without a cycle.

JSON layout: a nested config is its own dict; a plain dataclass field (a distribution record of the
prior) is a dict of its fields plus `"kind"`, its class name; tuples are lists.

Removed fields: a config class lists in `REMOVED` the fields a former version had, each with the
value that left it off. A file written then (a checkpoint's config, a weight file's manifest, a
`config.json`) holds them: at that value the key is ignored, so the file loads as before; at any
other value it is refused in one line naming the key, since this version cannot compute it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

Config = TypeVar("Config", bound="ConfigBase")


class ConfigBase:
    """Mixin of the frozen dataclass configs (see the module docstring)."""

    # {removed field: the value that meant "off"}: accepted at that value, refused otherwise
    REMOVED: typing.ClassVar[dict[str, Any]] = {}

    def replace(self: Config, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls: type[Config], data: dict[str, Any]) -> Config:
        """The config from `to_dict`'s layout; a field it does not have is a ValueError, and so is a
        removed one (`REMOVED`) at other than its former default (at it, the key is ignored)."""
        data = {name: value for name, value in data.items() if not cls.removed_field(name, value)}
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {unknown}")
        return cls(**{name: cls.field_from_json(name, value) for name, value in data.items()})

    @classmethod
    def removed_field(cls, name: str, value: Any) -> bool:
        """True when `name` is a removed field set to its former default (ignore it); a ValueError
        naming it when set to anything else; False for any other name."""
        if name not in cls.REMOVED:
            return False
        former = cls.REMOVED[name]
        if value != former or isinstance(value, bool) != isinstance(former, bool):
            raise ValueError(
                f"{cls.__name__}.{name} = {json.dumps(value, default=repr)} cannot be honoured: the setting "
                f"was removed (never measured, docs/TRAINING.md); only its former default "
                f"{json.dumps(former)} loads"
            )
        return True

    @classmethod
    def from_json(cls: type[Config], text: str) -> Config:
        return cls.from_dict(json.loads(text))

    @classmethod
    def field_from_json(cls, name: str, value: Any) -> Any:
        """The value of field `name` from its JSON form (a subclass overrides it for a field whose
        type its annotation does not name)."""
        return _revive(_hints(cls).get(name), value, f"{cls.__name__}.{name}")

    def with_overrides(self: Config, assignments: Iterable[str]) -> Config:
        """Apply `key=value` assignments; dotted keys reach nested configs and records
        (`model.dtype=bfloat16`, `prior.tree_depth.max_scale=3`).

        Values are parsed as JSON where they parse (numbers, true/false, null, lists), else taken as
        strings; an int given for a float field becomes a float, a list a tuple. The assignments to
        one nested config apply together (`prior.max_hidden=32` with `prior.width_buckets=[32]`); a
        later one to the same key wins. An unknown key is a ValueError naming it.
        """
        changes: dict[str, Any] = {}
        for assignment in assignments:
            key, sep, text = assignment.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--set expects key=value, got {assignment!r}")
            *parents, name = key.strip().split(".")
            node = changes
            for parent in parents:
                node = node.setdefault(parent, {})
                if not isinstance(node, dict):
                    raise ValueError(f"--set {key.strip()!r} reaches into a value set whole before")
            node[name] = (_parse_value(text.strip()), key.strip())
        return _apply(self, changes)

    def check_integers(self, minimum: int, names: Iterable[str]) -> None:
        """ValueError naming the first field of `names` that is not an integer >= minimum."""
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{type(self).__name__}.{name} must be {what}, got {value!r}")


def preset(registry: dict[str, Callable[[], Config]], name: str, what: str) -> Config:
    """`registry[name]()`; an unknown name is a ValueError listing the known ones."""
    try:
        build = registry[name]
    except KeyError:
        raise ValueError(f"unknown {what} preset {name!r}; choose one of {sorted(registry)}") from None
    return build()


def field_names(cls: type, prefix: str = "") -> list[str]:
    """The `--set` keys of a config class: its fields, `prefix.`-qualified."""
    return [f"{prefix}{f.name}" for f in dataclasses.fields(cls)]


# -- JSON forms ---------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, ConfigBase):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"kind": type(value).__name__, **{k: _plain(v) for k, v in dataclasses.asdict(value).items()}}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _revive(hint: Any, value: Any, where: str) -> Any:
    if isinstance(value, dict) and isinstance(hint, type):
        if issubclass(hint, ConfigBase):
            return hint.from_dict(value)
        if dataclasses.is_dataclass(hint):
            fields = dict(value)
            kind = fields.pop("kind", hint.__name__)
            if kind != hint.__name__:
                raise ValueError(f"{where} must be a {hint.__name__}, got a {kind}")
            return hint(**fields)
    return _tuples(value)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# -- key=value overrides ------------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _apply(obj: Any, changes: dict[str, Any]) -> Any:
    """`obj` with `changes` ({field: (value, full key)} or {field: {nested changes}}) applied in one
    `dataclasses.replace` per config, so that its validation sees them all at once."""
    names = {f.name for f in dataclasses.fields(obj)}
    values = {}
    for head, change in changes.items():
        full_key = _a_key(change) if isinstance(change, dict) else change[1]
        if head not in names:
            if not isinstance(change, dict) and type(obj).removed_field(head, change[0]):
                continue  # a removed setting at its former default: nothing to set
            raise ValueError(f"unknown setting {full_key!r}: {type(obj).__name__} has fields {sorted(names)}")
        current = getattr(obj, head)
        if isinstance(change, dict):
            if not dataclasses.is_dataclass(current):
                raise ValueError(f"unknown setting {full_key!r}: {head!r} has no sub-fields")
            values[head] = _apply(current, change)
        else:
            values[head] = _coerce(change[0], current, _hints(type(obj)).get(head))
    return dataclasses.replace(obj, **values)


def _a_key(changes: dict[str, Any]) -> str:
    change = next(iter(changes.values()))
    return _a_key(change) if isinstance(change, dict) else change[1]


def _coerce(value: Any, current: Any, hint: Any) -> Any:
    if (isinstance(current, float) or hint is float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return _tuples(value)
