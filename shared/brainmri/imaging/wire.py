"""The format of what a decode child sends back to its parent: data, never code.

Why not pickle: the child is where a decoder exploit would run, and unpickling calls whatever
the pickle names - a compromised child could answer with a pickle that runs code in the API or
worker process, which holds every secret the child was confined away from. Confinement would
then protect nothing. So replies are JSON for structure plus raw buffers for bytes and arrays,
and the parent rebuilds only what it knows:

* ``None``, ``bool``, ``int``, ``float``, ``str``, lists, tuples and dicts with string keys;
* ``bytes``, and NumPy arrays of booleans or numbers (never object arrays);
* the dataclasses and enums decoders return (``DecodedInput``, ``SanitizedUpload``,
  ``InputFormat``) and the child's ``Confinement`` report;
* exceptions of the project's input-error family or of Python's built-in exceptions, rebuilt
  from their class name, arguments and ``code``, with the child's traceback as text.

Anything else is refused on both ends (:class:`WireError`). The parent-to-child direction still
uses pickle: it carries the parent's own function and arguments to a process it started.

Frame: 4-byte big-endian header length, the JSON header, then the buffers back to back; the
header lists their lengths.
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import functools
import json
import struct
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from brainmri import errors

_HEADER = struct.Struct(">I")
_ARRAY_KINDS = "biuf"  # booleans, signed and unsigned integers, floats


class WireError(ValueError):
    """A value that cannot be sent, or a reply that is not well formed."""


@functools.cache
def _dataclasses() -> dict[str, type]:
    """What decoders return (imported here, not at the top: the sandbox imports this module,
    and the decoders' modules import the sandbox)."""
    from brainmri.imaging.confine import Confinement
    from brainmri.imaging.ingest import SanitizedUpload
    from brainmri.imaging.inputs import DecodedInput

    return {cls.__name__: cls for cls in (DecodedInput, SanitizedUpload, Confinement)}


@functools.cache
def _enums() -> dict[str, type[enum.Enum]]:
    from brainmri.imaging.decode import InputFormat

    return {InputFormat.__name__: InputFormat}


@functools.cache
def _error_classes() -> dict[str, type[BaseException]]:
    """The project's input errors and Python's built-in exceptions, by qualified name."""
    found: dict[str, type[BaseException]] = {}
    pending: list[type[errors.InputError]] = [errors.InputError]
    while pending:
        cls = pending.pop()
        found[f"brainmri.errors.{cls.__name__}"] = cls
        pending += cls.__subclasses__()
    for name in dir(builtins):
        value = getattr(builtins, name)
        if isinstance(value, type) and issubclass(value, Exception):
            found[f"builtins.{name}"] = value
    return found


class RemoteTraceback(Exception):
    """The child's traceback, attached as ``__cause__`` of an error it raised."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --- encoding (in the child) ------------------------------------------------------------------
def dumps(value: Any) -> bytes:
    """``value`` as one frame; :class:`WireError` names the first part that cannot be sent."""
    buffers: list[bytes] = []
    header = json.dumps(
        {"value": _encode(value, buffers), "buffers": [len(b) for b in buffers]},
        separators=(",", ":"),
    ).encode()
    return b"".join([_HEADER.pack(len(header)), header, *buffers])


def _encode(value: Any, buffers: list[bytes]) -> Any:
    if isinstance(value, enum.Enum):  # first: a str-valued enum is a str too
        if _enums().get(type(value).__name__) is not type(value):
            raise WireError(f"a {type(value).__name__} cannot be sent back from a decode child")
        return {"$": "enum", "name": type(value).__name__, "v": value.value}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        buffers.append(bytes(value))
        return {"$": "bytes", "i": len(buffers) - 1}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _ARRAY_KINDS:
            raise WireError(f"arrays of dtype {value.dtype} cannot be sent")
        buffers.append(np.ascontiguousarray(value).tobytes())
        return {"$": "array", "i": len(buffers) - 1, "dtype": value.dtype.str, "shape": value.shape}
    if isinstance(value, np.generic) and value.dtype.kind in _ARRAY_KINDS:
        return value.item()
    if isinstance(value, list):
        return [_encode(item, buffers) for item in value]
    if isinstance(value, tuple):
        return {"$": "tuple", "v": [_encode(item, buffers) for item in value]}
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise WireError("only dicts with string keys can be sent")
        return {"$": "dict", "v": {key: _encode(item, buffers) for key, item in value.items()}}
    if dataclasses.is_dataclass(value) and _dataclasses().get(type(value).__name__) is type(value):
        fields = {
            f.name: _encode(getattr(value, f.name), buffers) for f in dataclasses.fields(value)
        }
        return {"$": "dataclass", "name": type(value).__name__, "v": fields}
    if isinstance(value, BaseException):
        return _encode_error(value, buffers)
    raise WireError(f"a {type(value).__name__} cannot be sent back from a decode child")


def _encode_error(error: BaseException, buffers: list[bytes]) -> Any:
    name = f"{type(error).__module__}.{type(error).__name__}"
    if name not in _error_classes():
        # A library's own exception: sent as its nearest built-in base class, naming it.
        return _encode_error(_as_builtin(error), buffers)
    args = list(error.args)
    if isinstance(error, errors.BrainMRIError):
        args = [error.message]
    try:
        encoded_args = [_encode(arg, buffers) for arg in args]
    except WireError:
        encoded_args = [str(error)]
    return {
        "$": "error",
        "name": name,
        "args": encoded_args,
        "code": getattr(error, "code", None) if isinstance(error, errors.BrainMRIError) else None,
        "traceback": "".join(traceback.format_exception(error)),
    }


def _as_builtin(error: BaseException) -> Exception:
    """``error`` as the first built-in exception class in its MRO (``OSError`` for Pillow's
    ``UnidentifiedImageError``), so ``except OSError`` still catches it in the parent; its
    own class name leads the message. Not an ``Exception`` at all: a ``RuntimeError``."""
    allowed = _error_classes()
    base: type[Exception] = RuntimeError
    for cls in type(error).__mro__:
        if cls.__module__ == "builtins" and f"builtins.{cls.__name__}" in allowed:
            base = cls
            break
    message = f"{type(error).__module__}.{type(error).__name__}: {error}"
    try:
        renamed = base(message)
    except TypeError:  # a base that wants other arguments (UnicodeDecodeError's five)
        renamed = RuntimeError(message)
    renamed.__traceback__ = error.__traceback__
    return renamed


# --- decoding (in the parent) -----------------------------------------------------------------
def loads(frame: bytes) -> Any:
    """Rebuild a value from a frame; anything unexpected is a :class:`WireError`."""
    try:
        (size,) = _HEADER.unpack_from(frame)
        header = json.loads(frame[_HEADER.size : _HEADER.size + size])
        lengths = header["buffers"]
        if not isinstance(lengths, list) or not all(isinstance(n, int) and n >= 0 for n in lengths):
            raise WireError("malformed buffer table")
        offsets, position = [], _HEADER.size + size
        for length in lengths:
            offsets.append((position, position + length))
            position += length
        if position != len(frame):
            raise WireError("frame length does not match its buffers")
        view = memoryview(frame)
        buffers = [view[start:end] for start, end in offsets]
        return _decode(header["value"], buffers)
    except WireError:
        raise
    except (struct.error, ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        raise WireError(f"malformed reply from a decode child: {exc}") from exc


def _decode(node: Any, buffers: list[memoryview]) -> Any:
    if node is None or isinstance(node, bool | int | float | str):
        return node
    if isinstance(node, list):
        return [_decode(item, buffers) for item in node]
    if not isinstance(node, dict) or not isinstance(node.get("$"), str):
        raise WireError("malformed value")
    decoder = _DECODERS.get(node["$"])
    if decoder is None:
        raise WireError(f"unknown value tag {node['$']!r}")
    return decoder(node, buffers)


def _decode_bytes(node: dict[str, Any], buffers: list[memoryview]) -> bytes:
    return bytes(buffers[node["i"]])


def _decode_array(node: dict[str, Any], buffers: list[memoryview]) -> np.ndarray:
    dtype = np.dtype(node["dtype"])
    if dtype.kind not in _ARRAY_KINDS or dtype.hasobject:
        raise WireError(f"arrays of dtype {dtype} are not accepted")
    shape = tuple(int(n) for n in node["shape"])
    return np.frombuffer(buffers[node["i"]], dtype=dtype).reshape(shape).copy()


def _decode_tuple(node: dict[str, Any], buffers: list[memoryview]) -> tuple[Any, ...]:
    return tuple(_decode(item, buffers) for item in node["v"])


def _decode_dict(node: dict[str, Any], buffers: list[memoryview]) -> dict[str, Any]:
    return {str(key): _decode(item, buffers) for key, item in node["v"].items()}


def _decode_enum(node: dict[str, Any], buffers: list[memoryview]) -> enum.Enum:
    cls = _enums().get(node["name"])
    if cls is None:
        raise WireError(f"unknown enum {node['name']!r}")
    return cls(node["v"])


def _decode_dataclass(node: dict[str, Any], buffers: list[memoryview]) -> Any:
    cls = _dataclasses().get(node["name"])
    if cls is None:
        raise WireError(f"unknown dataclass {node['name']!r}")
    fields = {key: _decode(item, buffers) for key, item in node["v"].items()}
    if set(fields) != {f.name for f in dataclasses.fields(cls)}:
        raise WireError(f"{node['name']} arrived with other fields than it has")
    return cls(**fields)


def _decode_error(node: dict[str, Any], buffers: list[memoryview]) -> BaseException:
    cls = _error_classes().get(node["name"])
    if cls is None:
        raise WireError(f"unknown exception {node['name']!r}")
    args = [_decode(arg, buffers) for arg in node["args"]]
    error = cls(*args)
    if isinstance(error, errors.BrainMRIError) and isinstance(node.get("code"), str):
        error.code = node["code"]
    error.__cause__ = RemoteTraceback(str(node.get("traceback", "")))
    return error


_DECODERS: dict[str, Callable[[dict[str, Any], list[memoryview]], Any]] = {
    "bytes": _decode_bytes,
    "array": _decode_array,
    "tuple": _decode_tuple,
    "dict": _decode_dict,
    "enum": _decode_enum,
    "dataclass": _decode_dataclass,
    "error": _decode_error,
}
