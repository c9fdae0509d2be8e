"""Avro binary encoding compiled from a schema into one Python function per direction.

Why not fastavro for the hot path: its generic Cython walker looks every value's schema up at run
time and, for a `["null", record]` union, validates the whole record before writing it. Here that
costs 13 µs to encode an execution record and 25-30 µs to decode an inbound lead, the qualifier's
largest cost. A function generated for one schema does only the work that schema needs (measured
in the README's design notes). fastavro remains the reference: a hypothesis test holds these
functions byte-for-byte equal to it on every schema under `schemas/avro/`, and it still decodes
records written with another schema version, which need Avro schema resolution.

Covered: null, boolean, int, long, float, double, bytes, string, record, enum, array, map and
two-branch unions with null, which is every type our schemas use. Anything else is refused when
the codec is built, so an unsupported schema fails at start-up, not on a record.
"""

from __future__ import annotations

import keyword
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

_SMALL = 1 << 14
"""Non-negative ints below this encode through a table: lengths, counts, scores, versions."""


def _zigzag_varint(value: int) -> bytes:
    if not -(1 << 63) <= value < 1 << 63:
        raise ValueError(f"{value} does not fit an Avro long")
    unsigned = (value << 1) ^ (value >> 63)
    out = bytearray()
    while unsigned > 0x7F:
        out.append((unsigned & 0x7F) | 0x80)
        unsigned >>= 7
    out.append(unsigned)
    return bytes(out)


_VARINTS = tuple(_zigzag_varint(n) for n in range(_SMALL))
_large_varint = lru_cache(maxsize=4096)(_zigzag_varint)
"""Timestamps repeat within a batch (evaluation time) and within an event's records."""


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """The zigzag varint at `pos`: (value, position after it)."""
    unsigned = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        unsigned |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (unsigned >> 1) ^ -(unsigned & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    length, pos = _read_long(data, pos)
    if length < 0:
        raise ValueError(f"negative length {length}")
    return length, pos


class UnsupportedSchemaError(ValueError):
    """The schema uses an Avro feature the compiled codec does not cover."""


Schema = Any
"""A schema as JSON: a type name, a list (union) or an object."""


class _Source:
    """Generated source text plus the constants it refers to by generated names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {
            "_VARINTS": _VARINTS,
            "_SMALL": _SMALL,
            "_large_varint": _large_varint,
            "_read_long": _read_long,
            "_read_length": _read_length,
            "_pack_double": struct.Struct("<d").pack,
            "_pack_float": struct.Struct("<f").pack,
            "_unpack_double": struct.Struct("<d").unpack_from,
            "_unpack_float": struct.Struct("<f").unpack_from,
        }
        self._names = 0

    def name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    def constant(self, value: Any) -> str:
        name = self.name("_c")
        self.namespace[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def function(self, name: str) -> Callable[..., Any]:
        code = compile("\n".join(self.lines) + "\n", f"<avro {name}>", "exec")
        exec(code, self.namespace)
        function: Callable[..., Any] = self.namespace[name]
        return function


def _resolve(schema: Schema, named: dict[str, Any], namespace: str) -> Schema:
    """A named reference replaced by its definition; named definitions recorded as they appear."""
    if isinstance(schema, str):
        if schema in named:
            return named[schema]
        qualified = f"{namespace}.{schema}" if namespace and "." not in schema else schema
        return named.get(qualified, schema)
    if isinstance(schema, dict) and schema.get("type") in ("record", "enum", "fixed"):
        if "logicalType" in schema:
            raise UnsupportedSchemaError(f"logical type {schema['logicalType']!r}")
        full = _full_name(schema, namespace)
        named[full] = schema
        named.setdefault(schema["name"].rsplit(".", 1)[-1], schema)
    return schema


def _full_name(schema: dict[str, Any], namespace: str) -> str:
    name: str = schema["name"]
    if "." in name:
        return name
    space = schema.get("namespace", namespace)
    return f"{space}.{name}" if space else name


def _nullable(schema: list[Any]) -> tuple[int, Schema]:
    """(index of the null branch, the other branch) of a two-branch union with null."""
    if len(schema) == 2 and "null" in schema:
        null_at = schema.index("null")
        other = schema[1 - null_at]
        if other != "null" and not isinstance(other, list):
            return null_at, other
    raise UnsupportedSchemaError(f"union {schema!r}: only a union of null and one other type is compiled")


def _primitive(schema: Schema) -> str:
    if isinstance(schema, dict):
        if "logicalType" in schema:
            raise UnsupportedSchemaError(f"logical type {schema['logicalType']!r}")
        schema = schema["type"]
    return schema if isinstance(schema, str) else ""


class _Generator:
    """What the encoder and decoder generators share: the source being written, the named types
    met so far, and the records whose code is being written."""

    def __init__(self) -> None:
        self.src = _Source()
        self._named: dict[str, Any] = {}
        self._open_records: set[str] = set()

    def resolve(self, schema: Schema, namespace: str) -> Schema:
        return _resolve(schema, self._named, namespace)

    @contextmanager
    def inside_record(self, schema: dict[str, Any], namespace: str) -> Iterator[str]:
        """Brackets the code of one record; yields the namespace of its fields. Code is inlined, so
        a record that contains itself would never end: it is refused."""
        full_name = _full_name(schema, namespace)
        if full_name in self._open_records:
            raise UnsupportedSchemaError(f"record {full_name} contains itself (a recursive type)")
        self._open_records.add(full_name)
        yield full_name.rpartition(".")[0]
        self._open_records.discard(full_name)


class _Encoder(_Generator):
    def __init__(self, schema: Schema, from_attributes: bool) -> None:
        super().__init__()
        self._from_attributes = from_attributes
        self.src.emit(0, "def encode(record, header, _VARINTS=_VARINTS, _SMALL=_SMALL):")
        self.src.emit(1, "buf = bytearray(header)")
        self.value(schema, "record", 1, "")
        self.src.emit(1, "return bytes(buf)")

    def long(self, expr: str, depth: int, non_negative: bool = False) -> None:
        small = f"{expr} < _SMALL" if non_negative else f"0 <= {expr} < _SMALL"
        self.src.emit(depth, f"buf += _VARINTS[{expr}] if {small} else _large_varint({expr})")

    def value(self, schema: Schema, expr: str, depth: int, namespace: str) -> None:
        schema = self.resolve(schema, namespace)
        emit = self.src.emit
        if isinstance(schema, list):
            null_at, other = _nullable(schema)
            emit(depth, f"if {expr} is None:")
            emit(depth + 1, f"buf += {_VARINTS[null_at]!r}")
            emit(depth, "else:")
            emit(depth + 1, f"buf += {_VARINTS[1 - null_at]!r}")
            self.value(other, expr, depth + 1, namespace)
            return
        kind = _primitive(schema)
        if kind == "null":
            emit(depth, f"if {expr} is not None:")
            emit(depth + 1, f"raise ValueError('expected null, got ' + type({expr}).__name__)")
        elif kind == "boolean":
            emit(depth, f"buf += b'\\x01' if {expr} else b'\\x00'")
        elif kind in ("int", "long"):
            self.long(expr, depth)
        elif kind == "double":
            emit(depth, f"buf += _pack_double({expr})")
        elif kind == "float":
            emit(depth, f"buf += _pack_float({expr})")
        elif kind in ("string", "bytes"):
            raw, size = self.src.name("b"), self.src.name("n")
            emit(depth, f"{raw} = {expr}.encode()" if kind == "string" else f"{raw} = bytes({expr})")
            emit(depth, f"{size} = len({raw})")
            self.long(size, depth, non_negative=True)
            emit(depth, f"buf += {raw}")
        elif kind == "record":
            self.record(schema, expr, depth, namespace)
        elif kind == "enum":
            indexes = self.src.constant({symbol: _VARINTS[i] for i, symbol in enumerate(schema["symbols"])})
            emit(depth, f"buf += {indexes}[{expr}]")
        elif kind in ("array", "map"):
            self.collection(schema, kind, expr, depth, namespace)
        else:
            raise UnsupportedSchemaError(f"type {schema!r}")

    def record(self, schema: dict[str, Any], expr: str, depth: int, namespace: str) -> None:
        from_attributes, self._from_attributes = self._from_attributes, False  # the top record only
        with self.inside_record(schema, namespace) as inner:
            for field in schema["fields"]:
                item = self.src.name("v")
                name = field["name"]
                if from_attributes:
                    read = f"{expr}.{name}" if not keyword.iskeyword(name) else f"getattr({expr}, {name!r})"
                    self.src.emit(depth, f"{item} = {read}")
                elif "default" in field:
                    default = self.src.constant(field["default"])
                    self.src.emit(depth, f"{item} = {expr}.get({name!r}, {default})")
                elif isinstance(field["type"], list):
                    self.src.emit(depth, f"{item} = {expr}.get({name!r})")
                else:
                    self.src.emit(depth, f"{item} = {expr}[{name!r}]")
                self.value(field["type"], item, depth, inner)

    def collection(self, schema: dict[str, Any], kind: str, expr: str, depth: int, namespace: str) -> None:
        emit = self.src.emit
        size = self.src.name("n")
        emit(depth, f"if {expr}:")
        emit(depth + 1, f"{size} = len({expr})")
        self.long(size, depth + 1, non_negative=True)
        if kind == "map":
            key, item = self.src.name("k"), self.src.name("v")
            emit(depth + 1, f"for {key}, {item} in {expr}.items():")
            self.value("string", key, depth + 2, namespace)
            self.value(schema["values"], item, depth + 2, namespace)
        else:
            item = self.src.name("v")
            emit(depth + 1, f"for {item} in {expr}:")
            self.value(schema["items"], item, depth + 2, namespace)
        emit(depth, "buf += b'\\x00'")


class _Decoder(_Generator):
    def __init__(self, schema: Schema) -> None:
        super().__init__()
        self.src.emit(0, "def decode(data, pos):")
        result = self.value(schema, 1, "")
        self.src.emit(1, f"return {result}, pos")

    def long(self, target: str, depth: int) -> None:
        self._varint(target, depth, "0x80", "_read_long", f"({target} >> 1) ^ -({target} & 1)")

    def length(self, target: str, depth: int) -> None:
        """A long that must not be negative. In one byte, a set low bit is the negative case."""
        self._varint(target, depth, "0x81", "_read_length", f"{target} >> 1")

    def _varint(self, target: str, depth: int, slow_bits: str, slow_read: str, one_byte: str) -> None:
        """Reads into `target` without a call for one byte (the common case); a byte with any of
        `slow_bits` set goes to the `slow_read` function."""
        emit = self.src.emit
        emit(depth, f"{target} = data[pos]")
        emit(depth, f"if {target} & {slow_bits}:")
        emit(depth + 1, f"{target}, pos = {slow_read}(data, pos)")
        emit(depth, "else:")
        emit(depth + 1, "pos += 1")
        emit(depth + 1, f"{target} = {one_byte}")

    def value(self, schema: Schema, depth: int, namespace: str) -> str:
        """Emits code that reads one value; returns the expression holding it."""
        schema = self.resolve(schema, namespace)
        emit = self.src.emit
        target = self.src.name("v")
        if isinstance(schema, list):
            null_at, other = _nullable(schema)
            branch = self.src.name("u")
            emit(depth, f"{branch} = data[pos]")
            emit(depth, "pos += 1")
            emit(depth, f"if {branch} == {2 * null_at}:")
            emit(depth + 1, f"{target} = None")
            emit(depth, f"elif {branch} == {2 * (1 - null_at)}:")
            inner = self.value(other, depth + 1, namespace)
            emit(depth + 1, f"{target} = {inner}")
            emit(depth, "else:")
            emit(depth + 1, f"raise ValueError('union branch byte ' + str({branch}) + ' is out of range')")
            return target
        kind = _primitive(schema)
        if kind == "null":
            return "None"
        if kind == "boolean":
            emit(depth, f"{target} = data[pos] == 1")
            emit(depth, "pos += 1")
        elif kind in ("int", "long"):
            self.long(target, depth)
        elif kind == "double":
            emit(depth, f"{target} = _unpack_double(data, pos)[0]")
            emit(depth, "pos += 8")
        elif kind == "float":
            emit(depth, f"{target} = _unpack_float(data, pos)[0]")
            emit(depth, "pos += 4")
        elif kind in ("string", "bytes"):
            size = self.src.name("n")
            self.length(size, depth)
            # A slice past the end is short rather than an error; `decode` then ends past the data.
            read = f"data[pos:pos + {size}]"
            emit(depth, f"{target} = {read}.decode()" if kind == "string" else f"{target} = bytes({read})")
            emit(depth, f"pos += {size}")
        elif kind == "record":
            with self.inside_record(schema, namespace) as inner:
                fields = [(field["name"], self.value(field["type"], depth, inner)) for field in schema["fields"]]
            emit(depth, f"{target} = {{" + ", ".join(f"{name!r}: {value}" for name, value in fields) + "}")
        elif kind == "enum":
            symbols = self.src.constant(tuple(schema["symbols"]))
            index = self.src.name("i")
            self.length(index, depth)
            emit(depth, f"{target} = {symbols}[{index}]")
        elif kind in ("array", "map"):
            self.collection(schema, kind, target, depth, namespace)
        else:
            raise UnsupportedSchemaError(f"type {schema!r}")
        return target

    def collection(self, schema: dict[str, Any], kind: str, target: str, depth: int, namespace: str) -> None:
        """Blocks until a zero count; a negative count is followed by the block's byte size."""
        emit = self.src.emit
        count, ignored = self.src.name("c"), self.src.name("s")
        emit(depth, f"{target} = {{}}" if kind == "map" else f"{target} = []")
        self.long(count, depth)
        emit(depth, f"while {count}:")
        emit(depth + 1, f"if {count} < 0:")
        emit(depth + 2, f"{count} = -{count}")
        self.long(ignored, depth + 2)
        if kind == "map" or schema["items"] != "null":
            # Every item takes a byte at least: a count beyond the bytes left is corrupt, not a long loop.
            emit(depth + 1, f"if {count} > len(data) - pos:")
            emit(
                depth + 2,
                f"raise ValueError('block of ' + str({count}) + ' items in ' + str(len(data) - pos) + ' bytes')",
            )
        emit(depth + 1, f"for _ in range({count}):")
        if kind == "map":
            key = self.value("string", depth + 2, namespace)
            item = self.value(schema["values"], depth + 2, namespace)
            emit(depth + 2, f"{target}[{key}] = {item}")
        else:
            item = self.value(schema["items"], depth + 2, namespace)
            emit(depth + 2, f"{target}.append({item})")
        self.long(count, depth + 1)


Encode = Callable[[Any, bytes], bytes]
Decode = Callable[[bytes, int], tuple[Any, int]]


def compile_encoder(schema: Schema, from_attributes: bool = False) -> Encode:
    """`encode(record, header)`: the header bytes followed by the record's Avro binary encoding.

    With `from_attributes`, the top record's fields are read as attributes of an object that has
    every one of them (nested records are still mappings): a producer that holds its result in an
    object skips building a dict per record only to have it read back.
    """
    encoder: Encode = _Encoder(schema, from_attributes).src.function("encode")
    return encoder


def compile_decoder(schema: Schema) -> Decode:
    """`decode(data, pos)`: (the value whose encoding starts at `pos`, the position after it)."""
    decoder: Decode = _Decoder(schema).src.function("decode")
    return decoder
