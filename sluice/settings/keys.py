"""Keys a config file holds that no setting reads: a typo would otherwise be ignored in
silence (`suficiency:` leaves the defaults in force), so loading names each one."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel


def unknown_keys(model: type[BaseModel], raw: Any, where: str = "") -> list[str]:
    """`where.key: unknown key (did you mean ...?)` for each key of `raw` that `model`
    and its nested sections do not define."""
    if not isinstance(raw, dict):
        return []
    found: list[str] = []
    fields = model.model_fields
    for key, value in raw.items():
        path = f"{where}{key}"
        field = fields.get(key) if isinstance(key, str) else None
        if field is None:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            found.append(f"{path}: unknown key{hint}")
        else:
            found.extend(_nested(field.annotation, value, path))
    return found


def _nested(annotation: Any, value: Any, path: str) -> list[str]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if _is_model(a)]
        return unknown_keys(models[0], value, f"{path}.") if len(models) == 1 else []
    if origin is dict and isinstance(value, dict):
        inner = typing.get_args(annotation)[1]
        return [k for name, item in value.items() for k in _nested(inner, item, f"{path}.{name}")]
    if origin is list and isinstance(value, list):
        inner = typing.get_args(annotation)[0]
        return [k for i, item in enumerate(value) for k in _nested(inner, item, f"{path}.{i}")]
    return unknown_keys(annotation, value, f"{path}.") if _is_model(annotation) else []


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
