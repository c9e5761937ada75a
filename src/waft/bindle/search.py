"""`/v1/_q` as v0.7.1's StrictEngine answers it: substring on the name, Rust-semver version ranges,
lexicographic order of `name/version`, offset/limit paging.

Version ranges follow Rust's `semver` 1.x `VersionReq` (not npm's): comma-separated comparators, a bare
partial version means `^`, and a range that does not parse matches nothing rather than erroring.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import semver

from waft.bindle.invoice import Invoice
from waft.errors import WaftError

DEFAULT_LIMIT = 50
MAX_LIMIT = 255  # `limit` is a u8 in v0.7.1


class QueryStringError(WaftError, ValueError):
    """The query string does not decode into QueryOptions (v0.7.1: 400 `Invalid query string`)."""


@dataclass(frozen=True)
class QueryOptions:
    query: str = ""
    version: str = ""
    offset: int = 0
    limit: int = DEFAULT_LIMIT
    strict: bool = False
    yanked: bool = False

    _ALIASES = {"q": "query", "query": "query", "v": "version", "version": "version", "o": "offset",
                "offset": "offset", "l": "limit", "limit": "limit", "strict": "strict", "yanked": "yanked"}

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> QueryOptions:
        """Decode like serde_urlencoded with `deny_unknown_fields`: unknown or repeated keys fail."""
        values: dict[str, Any] = {}
        for key, raw in pairs:
            canonical = cls._ALIASES.get(key)
            if canonical is None:
                raise QueryStringError(f"unknown query key `{key}`")
            if canonical in values:
                raise QueryStringError(f"duplicate query key `{canonical}`")
            values[canonical] = _convert(canonical, raw)
        return cls(**values)


def _convert(key: str, raw: str) -> Any:
    if key in ("query", "version"):
        return raw
    if key in ("strict", "yanked"):
        return parse_bool(raw, key)
    if not raw.isdigit():
        raise QueryStringError(f"`{key}` must be an unsigned integer, got {raw!r}")
    value = int(raw)
    if key == "limit" and value > MAX_LIMIT:
        raise QueryStringError(f"`limit` must be at most {MAX_LIMIT}, got {value}")
    if value >= 2**64:
        raise QueryStringError(f"`{key}` is out of range")
    return value


def parse_bool(raw: str, key: str) -> bool:
    if raw == "true":
        return True
    if raw == "false":
        return False
    raise QueryStringError(f"`{key}` must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Matches:
    """The `/v1/_q` response; every field is required by the Rust client's parser."""

    query: str
    strict: bool
    offset: int
    limit: int
    total: int
    more: bool
    yanked: bool
    invoices: list[Invoice] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "strict": self.strict, "offset": self.offset, "limit": self.limit,
                "total": self.total, "more": self.more, "yanked": self.yanked,
                "invoices": [i.to_dict() for i in self.invoices]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Matches:
        return cls(query=data["query"], strict=data["strict"], offset=data["offset"], limit=data["limit"],
                   total=data["total"], more=data["more"], yanked=data["yanked"],
                   invoices=[Invoice.from_dict(i) for i in data.get("invoices", [])])


def search(invoices: Iterable[Invoice], opts: QueryOptions) -> Matches:
    """Filter, sort by `name/version` string, then page.

    Deviation: yanked invoices are left out unless `yanked=true` (the spec's MUST; v0.7.1 returned
    them), and `strict`/`yanked` echo the request instead of v0.7.1's constant true/false.
    """
    found = sorted((i for i in invoices if _matches(i, opts)), key=lambda i: str(i.id))
    total = len(found)
    if opts.offset >= total or opts.limit == 0:
        page: list[Invoice] = []
        more = total > opts.offset
    else:
        end = min(opts.offset + opts.limit, total)
        page = found[opts.offset:end]
        more = total > opts.offset + opts.limit
    return Matches(query=opts.query, strict=opts.strict, offset=opts.offset, limit=opts.limit, total=total,
                   more=more, yanked=opts.yanked, invoices=page)


def _matches(invoice: Invoice, opts: QueryOptions) -> bool:
    if invoice.is_yanked() and not opts.yanked:
        return False
    if opts.query not in invoice.name:
        return False
    return not opts.version or version_matches(opts.version, invoice.version)


# ------------------------------------------------------------------------------ Rust semver VersionReq

_PARTIAL = re.compile(
    r"^(?P<op>=|>=|>|<=|<|~|\^)?\s*"
    r"(?P<major>\d+|[*xX])(?:\.(?P<minor>\d+|[*xX]))?(?:\.(?P<patch>\d+|[*xX]))?"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class _Comparator:
    op: str
    major: int | None
    minor: int | None
    patch: int | None
    pre: str | None

    def matches(self, v: semver.Version) -> bool:
        major, minor, patch = self.major, self.minor, self.patch
        if major is None:  # `*`
            return True
        lo = semver.Version(major, minor or 0, patch or 0, self.pre)
        if self.op == "=":
            if minor is None:
                return v.major == major
            if patch is None:
                return (v.major, v.minor) == (major, minor)
            return v.compare(lo) == 0
        if self.op == ">":
            if minor is None:
                return v.major > major
            if patch is None:
                return (v.major, v.minor) > (major, minor)
            return v.compare(lo) > 0
        if self.op == ">=":
            return v.compare(lo) >= 0
        if self.op == "<":
            return v.compare(lo) < 0
        if self.op == "<=":
            if minor is None:
                return v.major <= major
            if patch is None:
                return (v.major, v.minor) <= (major, minor)
            return v.compare(lo) <= 0
        if self.op == "~":
            if v.compare(lo) < 0:
                return False
            return v.major == major if minor is None else (v.major, v.minor) == (major, minor)
        # caret
        if v.compare(lo) < 0:
            return False
        if major > 0 or minor is None:
            return v.major == major
        if minor > 0 or patch is None:
            return (v.major, v.minor) == (0, minor)
        return (v.major, v.minor, v.patch) == (0, 0, patch)


def _parse_comparator(text: str) -> _Comparator:
    m = _PARTIAL.match(text.strip())
    if not m:
        raise ValueError(text)
    parts = [m.group("major"), m.group("minor"), m.group("patch")]
    nums: list[int | None] = []
    wildcard = False
    for part in parts:
        if part is None or part in "*xX":
            wildcard = wildcard or part is not None
            nums.append(None)
            continue
        if wildcard or (len(part) > 1 and part.startswith("0")):
            raise ValueError(text)  # `1.*.3` or a leading zero
        nums.append(int(part))
    # a prerelease needs a full version; `*` takes no operator
    if m.group("pre") and nums[2] is None:
        raise ValueError(text)
    op = m.group("op") or ("=" if wildcard else "^")
    if nums[0] is None and m.group("op"):
        raise ValueError(text)
    return _Comparator(op, nums[0], nums[1], nums[2], m.group("pre"))


def version_matches(requirement: str, version: str) -> bool:
    """v0.7.1 `version_compare`: an exact version means equality, else a VersionReq; junk matches nothing."""
    try:
        v = semver.Version.parse(version)
    except ValueError:
        return False
    try:
        exact = semver.Version.parse(requirement.strip())
    except ValueError:
        exact = None
    if exact is not None:
        return (exact.major, exact.minor, exact.patch, exact.prerelease, exact.build) == \
               (v.major, v.minor, v.patch, v.prerelease, v.build)
    try:
        comparators = [_parse_comparator(c) for c in requirement.split(",")]
    except ValueError:
        return False
    if not all(c.matches(v) for c in comparators):
        return False
    if v.prerelease is None:
        return True
    # a prerelease only matches a comparator on the same x.y.z that itself has a prerelease
    return any(c.pre and (c.major, c.minor, c.patch) == (v.major, v.minor, v.patch) for c in comparators)
