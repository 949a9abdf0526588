"""Reading params files safely, and turning validation errors into one line naming the dotted key.

The YAML loader refuses duplicate keys (naming the key) and bounds alias expansion (a "billion
laughs" file fails in milliseconds with a short message), nesting depth and file size. :func:`parse`
validates data against a params model (:mod:`vlclean.params`) and raises one
:class:`~vlclean.errors.ParamsError` line: ``params key 'train.lr': input should be greater than 0,
got -0.1``, values echoed at most ~80 characters (:func:`_show`), never a traceback.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from vlclean.errors import ParamsError

M = TypeVar("M", bound=BaseModel)
MAX_FILE_BYTES = 1 << 20  # a params file is a few kB
MAX_NODES = 100_000  # YAML nodes after alias expansion
MAX_DEPTH = 32  # nesting of mappings and lists
MAX_SHOWN = 80  # characters of a value echoed in an error


class _Bad(ValueError):
    """A cross-field check failed at ``key`` (relative to the model that raised it)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key, self.message = key, message


_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxdict, _repr.maxlist, _repr.maxtuple, _repr.maxset = 2, 4, 4, 4, 4
_repr.maxstring = _repr.maxother = MAX_SHOWN


def _show(value: Any) -> str:
    """``repr(value)``, at most ~MAX_SHOWN characters (never builds the whole repr of a big value)."""
    text = _repr.repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and bounds alias expansion, nesting and size (see module doc)."""


def _check_nodes(root: yaml.Node, where: str) -> None:
    """Walk the composed node graph once (aliases memoised): duplicates, depth, expanded size."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def walk(node: yaml.Node, key: str, depth: int) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if depth > MAX_DEPTH:
            raise ParamsError(f"params file {where}: '{key}' is nested more than {MAX_DEPTH} levels deep")
        if id(node) in active:
            raise ParamsError(f"params file {where}: '{key}' refers to itself (recursive alias)")
        active.add(id(node))
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for k, v in node.value:
                name = str(k.value) if isinstance(k, yaml.ScalarNode) else "?"
                sub = f"{key}.{name}" if key else name
                if isinstance(k, yaml.ScalarNode) and name in seen and name != "<<":
                    raise ParamsError(f"params key '{_one_line(sub, MAX_SHOWN)}': duplicate key in {where} "
                                      f"(line {k.start_mark.line + 1})")
                seen.add(name)
                total += walk(k, sub, depth + 1) + walk(v, sub, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                total += walk(v, f"{key}[{i}]", depth + 1)
        active.discard(id(node))
        if total > MAX_NODES:
            raise ParamsError(f"params file {where}: more than {MAX_NODES} values after alias expansion "
                              f"(at '{_one_line(key, MAX_SHOWN)}'); refusing to expand")
        sizes[id(node)] = total
        return total

    walk(root, "", 0)


def parse_yaml(text: str, where: str = "<params>") -> Any:
    """YAML text -> Python data with the guards of the module doc; every failure is one ParamsError line."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise ParamsError(f"params file {where} is larger than {MAX_FILE_BYTES} bytes")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise ParamsError(f"params file {where} is not valid YAML: {_one_line(err)}") from err
    except RecursionError as err:
        raise ParamsError(f"params file {where} is nested too deeply") from err
    finally:
        loader.dispose()


def read_params_file(path: str | Path) -> dict[str, Any]:
    """Read a params YAML file into a dict; a missing or malformed file is a ParamsError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ParamsError(f"params file {path} does not exist") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ParamsError(f"params file {path} cannot be read: {_one_line(err)}") from err
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"params file {path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _loc_key(prefix: str, loc: tuple) -> str:
    key = prefix
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key = f"{key}.{part}" if key else str(part)
    return key


def _model_at(cls: Any, loc: tuple) -> Any:
    """The model class found by following ``loc`` from ``cls`` (None when it is not a model)."""
    tp = cls
    for part in loc:
        while get_origin(tp) is Annotated or (get_origin(tp) is not None and type(None) in get_args(tp)):
            tp = get_args(tp)[0]
        origin = get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        elif origin is list and isinstance(part, int):
            tp = get_args(tp)[0]
        elif origin is dict and isinstance(part, str):
            tp = get_args(tp)[1]
        else:
            return None
    while get_origin(tp) is Annotated or (get_origin(tp) is not None and type(None) in get_args(tp)):
        tp = get_args(tp)[0]
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _message(err: ValidationError, cls: type[BaseModel], prefix: str) -> str:
    errors = err.errors(include_url=False)
    e = errors[0]
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    loc = tuple(e["loc"])
    cause = (e.get("ctx") or {}).get("error")
    if isinstance(cause, _Bad):
        key = _loc_key(prefix, loc)
        key = key + cause.key if cause.key.startswith("[") or not key else (f"{key}.{cause.key}" if cause.key else key)
        return f"params key '{_one_line(key, 200)}': {cause.message}{more}"
    key = _one_line(_loc_key(prefix, loc), 200)
    if e["type"] == "extra_forbidden" and not prefix and len(loc) == 1:
        return f"params key '{key}' is an unknown section; sections: {sorted(cls.model_fields)}{more}"
    if e["type"] == "extra_forbidden":
        owner = _model_at(cls, loc[:-1])
        allowed = f"; allowed keys under '{_loc_key(prefix, loc[:-1]) or 'the file'}': {sorted(owner.model_fields)}" \
            if owner is not None else ""
        return f"params key '{key}' is unknown{allowed}{more}"
    if e["type"] == "missing":
        return f"params key '{key}' is required{more}"
    msg = e["msg"]
    if isinstance(cause, Exception) and e["type"] == "value_error":
        msg = str(cause)
    msg = msg[0].lower() + msg[1:] if msg else msg
    return f"params key '{key}': {msg}, got {_show(e.get('input'))}{more}"


def parse(cls: type[M], data: Any, prefix: str) -> M:
    """Validate ``data`` (a mapping from YAML) as ``cls``; a ParamsError names the dotted key under ``prefix``."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ParamsError(_message(err, cls, prefix)) from None
    except RecursionError:
        raise ParamsError(f"params key '{prefix}': nested too deeply") from None
