"""The bindle invoice schema (v0.7.1): dataclasses, strict parsing, TOML/JSON output.

v0.7.1 uses serde with `deny_unknown_fields` and camelCase keys, and old Rust clients parse our
responses the same way, so we reject unknown keys on input and never emit a key outside the schema.
Parsing works on plain dicts, so TOML (`tomllib`) and JSON bodies share one validator.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import tomli_w

from waft.bindle.ids import BindleId, InvalidId, parse_version
from waft.errors import WaftError

BINDLE_VERSION_1 = "1.0.0"
DEFAULT_MEDIA_TYPE = "application/octet-stream"
SIGNATURE_ROLES = ("creator", "proxy", "host", "approver")
SATISFIED_BY = ("allOf", "oneOf", "optional")


class InvoiceError(WaftError, ValueError):
    """The document does not follow the invoice schema; the message names the key and the problem."""


# --------------------------------------------------------------------------------------------- model

@dataclass(frozen=True)
class Label:
    sha256: str
    name: str
    size: int
    media_type: str = DEFAULT_MEDIA_TYPE
    annotations: dict[str, str] | None = None
    feature: dict[str, dict[str, str]] | None = None
    origin: str | None = None


@dataclass(frozen=True)
class Condition:
    member_of: list[str] | None = None
    requires: list[str] | None = None


@dataclass(frozen=True)
class Parcel:
    label: Label
    conditions: Condition | None = None

    def member_of(self, group: str) -> bool:
        """Whether the parcel belongs to `group` (how the mlinference provider picks model/metadata)."""
        return bool(self.conditions and self.conditions.member_of and group in self.conditions.member_of)


@dataclass(frozen=True)
class Group:
    name: str
    required: bool | None = None
    satisfied_by: str | None = None


@dataclass(frozen=True)
class Signature:
    by: str
    signature: str
    key: str
    role: str
    at: int


@dataclass(frozen=True)
class Invoice:
    name: str
    version: str
    bindle_version: str = BINDLE_VERSION_1
    description: str | None = None
    authors: list[str] | None = None
    yanked: bool | None = None
    yanked_signature: list[Signature] | None = None
    annotations: dict[str, str] | None = None
    parcel: list[Parcel] | None = None
    group: list[Group] | None = None
    signature: list[Signature] | None = None

    @property
    def id(self) -> BindleId:
        return BindleId(self.name, self.version)

    @property
    def parcels(self) -> list[Parcel]:
        return list(self.parcel or [])

    def label_for(self, sha: str) -> Label | None:
        """The first label with this sha (plain string equality, as v0.7.1)."""
        for parcel in self.parcels:
            if parcel.label.sha256 == sha:
                return parcel.label
        return None

    def is_yanked(self) -> bool:
        return bool(self.yanked)

    def with_changes(self, **changes: Any) -> Invoice:
        return replace(self, **changes)

    # ---- output
    def to_dict(self) -> dict[str, Any]:
        return invoice_to_dict(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    # ---- input
    @classmethod
    def from_dict(cls, data: Any) -> Invoice:
        return invoice_from_dict(data)

    @classmethod
    def from_toml(cls, text: str | bytes) -> Invoice:
        return cls.from_dict(parse_toml_document(text))

    @classmethod
    def from_json(cls, text: str | bytes) -> Invoice:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvoiceError(f"invalid JSON: {exc}") from None
        return cls.from_dict(data)


def parse_toml_document(text: str | bytes) -> dict[str, Any]:
    """TOML text (bytes must be UTF-8) to a dict, with one-line errors."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvoiceError("invalid TOML: body is not UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvoiceError(f"invalid TOML: {exc}") from None


# ----------------------------------------------------------------------------------- strict readers

class _Reader:
    """Pulls typed keys out of one table and fails on leftovers (serde's `deny_unknown_fields`)."""

    def __init__(self, data: Any, where: str, *, deny_unknown: bool = True) -> None:
        if not isinstance(data, Mapping):
            raise InvoiceError(f"{where}: expected a table, got {_kind(data)}")
        self.data = dict(data)
        self.where = where
        self.deny_unknown = deny_unknown
        self.seen: set[str] = set()

    def _get(self, key: str, required: bool) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if required:
                raise InvoiceError(f"{self.where}: missing field `{key}`")
            return None
        return self.data[key]

    def text(self, key: str, required: bool = False) -> str | None:
        value = self._get(key, required)
        if value is not None and not isinstance(value, str):
            raise InvoiceError(f"{self.where}.{key}: expected a string, got {_kind(value)}")
        return value

    def flag(self, key: str) -> bool | None:
        value = self._get(key, False)
        if value is not None and not isinstance(value, bool):
            raise InvoiceError(f"{self.where}.{key}: expected a boolean, got {_kind(value)}")
        return value

    def u64(self, key: str, required: bool = False) -> int | None:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
            raise InvoiceError(f"{self.where}.{key}: expected an unsigned integer, got {_kind(value)}")
        return value

    def str_list(self, key: str) -> list[str] | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvoiceError(f"{self.where}.{key}: expected an array of strings")
        return list(value)

    def str_map(self, key: str) -> dict[str, str] | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise InvoiceError(f"{self.where}.{key}: expected a table of strings")
        return dict(value)

    def table_list(self, key: str) -> list[Any] | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, list):
            raise InvoiceError(f"{self.where}.{key}: expected an array of tables, got {_kind(value)}")
        return value

    def raw(self, key: str, required: bool = False) -> Any:
        return self._get(key, required)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown and self.deny_unknown:
            expected = ", ".join(f"`{k}`" for k in sorted(self.seen))
            raise InvoiceError(f"{self.where}: unknown field `{unknown[0]}`, expected one of {expected}")


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def _signatures(reader: _Reader, key: str) -> list[Signature] | None:
    items = reader.table_list(key)
    if items is None:
        return None
    out = []
    for i, item in enumerate(items):
        r = _Reader(item, f"{key}[{i}]")
        role = r.text("role", True)
        if role not in SIGNATURE_ROLES:
            raise InvoiceError(f"{key}[{i}].role: unknown role `{role}`, expected one of {', '.join(SIGNATURE_ROLES)}")
        sig = Signature(by=r.text("by", True), signature=r.text("signature", True), key=r.text("key", True),
                        role=role, at=r.u64("at", True))
        r.done()
        out.append(sig)
    return out


def label_from_dict(data: Any, where: str = "label") -> Label:
    r = _Reader(data, where)
    feature = r.raw("feature")
    if feature is not None:
        if not isinstance(feature, Mapping) or not all(
                isinstance(v, Mapping) and all(isinstance(x, str) for x in v.values()) for v in feature.values()):
            raise InvoiceError(f"{where}.feature: expected a table of tables of strings")
        feature = {k: dict(v) for k, v in feature.items()}
    label = Label(sha256=r.text("sha256", True), media_type=r.text("mediaType", True), name=r.text("name", True),
                  size=r.u64("size", True), annotations=r.str_map("annotations"), feature=feature,
                  origin=r.text("origin"))
    r.done()
    return label


def invoice_from_dict(data: Any) -> Invoice:
    """Validate a decoded document against the v0.7.1 schema."""
    r = _Reader(data, "invoice")
    bindle_version = r.text("bindleVersion", True)
    yanked = r.flag("yanked")
    yanked_signature = _signatures(r, "yankedSignature")
    # `[bindle]` flattens `Id` in v0.7.1, which makes serde ignore unknown keys there; we do the same.
    spec = _Reader(r.raw("bindle", True), "bindle", deny_unknown=False)
    name = spec.text("name", True)
    version = spec.text("version", True)
    description = spec.text("description")
    authors = spec.str_list("authors")
    if not name:
        raise InvoiceError("bindle.name: must not be empty")
    try:
        parse_version(version)
    except InvalidId as exc:
        raise InvoiceError(f"bindle.version: {exc}") from None
    annotations = r.str_map("annotations")
    parcels = None
    if (items := r.table_list("parcel")) is not None:
        parcels = []
        for i, item in enumerate(items):
            pr = _Reader(item, f"parcel[{i}]")
            label = label_from_dict(pr.raw("label", True), f"parcel[{i}].label")
            conditions = None
            if (cond := pr.raw("conditions")) is not None:
                cr = _Reader(cond, f"parcel[{i}].conditions")
                conditions = Condition(member_of=cr.str_list("memberOf"), requires=cr.str_list("requires"))
                cr.done()
            pr.done()
            parcels.append(Parcel(label=label, conditions=conditions))
    groups = None
    if (items := r.table_list("group")) is not None:
        groups = []
        for i, item in enumerate(items):
            gr = _Reader(item, f"group[{i}]")
            group = Group(name=gr.text("name", True), required=gr.flag("required"),
                          satisfied_by=gr.text("satisfiedBy"))
            if group.satisfied_by is not None and group.satisfied_by not in SATISFIED_BY:
                raise InvoiceError(f"group[{i}].satisfiedBy: unknown variant `{group.satisfied_by}`, "
                                   f"expected one of {', '.join(SATISFIED_BY)}")
            gr.done()
            groups.append(group)
    signature = _signatures(r, "signature")
    r.done()
    return Invoice(name=name, version=version, bindle_version=bindle_version, description=description,
                   authors=authors, yanked=yanked, yanked_signature=yanked_signature,
                   annotations=annotations, parcel=parcels, group=groups, signature=signature)


# ------------------------------------------------------------------------------------------- writers

def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    """TOML has no null and old clients deny unknown keys, so None simply means 'absent'."""
    return {k: v for k, v in data.items() if v is not None}


def label_to_dict(label: Label) -> dict[str, Any]:
    return _drop_none({"sha256": label.sha256, "mediaType": label.media_type, "name": label.name,
                       "size": label.size, "annotations": label.annotations, "feature": label.feature,
                       "origin": label.origin})


def _signature_to_dict(sig: Signature) -> dict[str, Any]:
    return {"by": sig.by, "signature": sig.signature, "key": sig.key, "role": sig.role, "at": sig.at}


def invoice_to_dict(inv: Invoice) -> dict[str, Any]:
    parcels = None
    if inv.parcel is not None:
        parcels = []
        for p in inv.parcel:
            entry: dict[str, Any] = {"label": label_to_dict(p.label)}
            if p.conditions is not None:
                entry["conditions"] = _drop_none({"memberOf": p.conditions.member_of,
                                                  "requires": p.conditions.requires})
            parcels.append(entry)
    return _drop_none({
        "bindleVersion": inv.bindle_version,
        "yanked": inv.yanked,
        "yankedSignature": None if inv.yanked_signature is None
        else [_signature_to_dict(s) for s in inv.yanked_signature],
        "bindle": _drop_none({"name": inv.name, "version": inv.version, "description": inv.description,
                              "authors": inv.authors}),
        "annotations": inv.annotations,
        "parcel": parcels,
        "group": None if inv.group is None else [
            _drop_none({"name": g.name, "required": g.required, "satisfiedBy": g.satisfied_by}) for g in inv.group],
        "signature": None if inv.signature is None else [_signature_to_dict(s) for s in inv.signature],
    })
