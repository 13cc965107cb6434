"""The field rules, through the pydantic schemas and the plain validation functions."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from webapp.models import MemoryCreate, MemoryUpdate
from webapp.validation import (
    content_limit,
    current_content_limit,
    ensure_utc,
    parse_utc,
    validate_content,
    validate_importance,
    validate_key,
    validate_namespace,
    validate_tags,
)

DEFAULT_MAX_BYTES = 65_536
EURO = "€"  # three bytes in UTF-8
GRIN = "\U0001f600"  # four bytes in UTF-8
VALID: dict[str, Any] = {"namespace": "facts", "key": "favourite-tea", "content": "Green tea."}
BOTH_SCHEMAS = pytest.mark.parametrize("schema", [MemoryCreate, MemoryUpdate])


def build(schema: type[BaseModel], **fields: Any) -> BaseModel:
    """Validate fields through schema; MemoryCreate gets valid values for the fields not given."""
    if schema is MemoryCreate:
        return schema.model_validate({**VALID, **fields})
    return schema.model_validate(fields)


def assert_refused(schema: type[BaseModel], field: str, value: Any) -> None:
    """Assert that schema refuses value for field, and blames that field."""
    with pytest.raises(ValidationError) as info:
        build(schema, **{field: value})
    assert {error["loc"][0] for error in info.value.errors()} == {field}


@pytest.fixture
def ten_bytes() -> Iterator[None]:
    """A content limit of 10 bytes for the test, as an app with CONTENT_MAX_BYTES=10 sets it."""
    with content_limit(10):
        yield


# --- importance ----------------------------------------------------------------------------

GOOD_IMPORTANCE = [(0, 0.0), (1, 1.0), (0.5, 0.5), (0.0, 0.0), (1.0, 1.0), (0.123, 0.123)]
BAD_IMPORTANCE = [math.nan, math.inf, -math.inf, 1.5, -0.1, 1.0000001, True, False, "0.5", None]


@pytest.mark.parametrize(("value", "expected"), GOOD_IMPORTANCE)
def test_validate_importance_accepts(value: float, expected: float) -> None:
    """Finite numbers in [0, 1] pass, as floats."""
    result = validate_importance(value)
    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize("value", BAD_IMPORTANCE, ids=repr)
def test_validate_importance_refuses(value: Any) -> None:
    """NaN, infinities, out-of-range numbers, booleans and strings are refused."""
    with pytest.raises(ValueError, match="importance"):
        validate_importance(value)


@BOTH_SCHEMAS
@pytest.mark.parametrize(("value", "expected"), GOOD_IMPORTANCE)
def test_schemas_accept_importance(schema: type[BaseModel], value: float, expected: float) -> None:
    """Both schemas take the same good importances."""
    model = build(schema, importance=value)
    assert model.importance == expected  # type: ignore[attr-defined]


@BOTH_SCHEMAS
@pytest.mark.parametrize("value", [v for v in BAD_IMPORTANCE if v is not None], ids=repr)
def test_schemas_refuse_importance(schema: type[BaseModel], value: Any) -> None:
    """Both schemas refuse the same bad importances."""
    assert_refused(schema, "importance", value)


def test_importance_defaults() -> None:
    """A new memory has importance 0.5; an update leaves it out unless given."""
    assert build(MemoryCreate).importance == 0.5  # type: ignore[attr-defined]
    assert MemoryUpdate().importance is None
    assert "importance" not in MemoryUpdate().model_dump(exclude_unset=True)


def test_memory_create_refuses_null_importance() -> None:
    """A memory's importance cannot be null (only an update may leave it out)."""
    assert_refused(MemoryCreate, "importance", None)


# --- tags ----------------------------------------------------------------------------------


def distinct_tags(count: int) -> list[str]:
    """count different valid tags."""
    return [f"tag{i}" for i in range(count)]


GOOD_TAGS = [
    pytest.param([], [], id="none"),
    pytest.param(
        [" Python ", "python", "AI", "ai ", "Ünïcode"], ["python", "ai", "ünïcode"], id="norm"
    ),
    pytest.param(["b", "a", "B"], ["b", "a"], id="first-wins"),
    pytest.param(distinct_tags(32), distinct_tags(32), id="32-distinct"),
    pytest.param(
        distinct_tags(20) + [t.upper() for t in distinct_tags(20)], distinct_tags(20), id="40-to-20"
    ),
    pytest.param(
        distinct_tags(32) + [f" TAG{i} " for i in range(8)], distinct_tags(32), id="40-to-32"
    ),
    pytest.param(["x" * 64], ["x" * 64], id="64-chars"),
    pytest.param(["  " + "y" * 64 + "  "], ["y" * 64], id="64-after-trim"),
    pytest.param(("a", "b"), ["a", "b"], id="tuple"),
    pytest.param(["two words"], ["two words"], id="inner-space"),
]
BAD_TAGS = [
    pytest.param(distinct_tags(33), id="33-distinct"),
    pytest.param(distinct_tags(32) + ["one-more"], id="32-plus-one"),
    pytest.param(["x" * 65], id="65-chars"),
    pytest.param([""], id="empty"),
    pytest.param(["   "], id="blank"),
    pytest.param(["ok", "\t"], id="tab-only"),
    pytest.param([1], id="int"),
    pytest.param(["ok", None], id="none-item"),
    pytest.param([["nested"]], id="nested"),
    pytest.param("a,b", id="string"),
    pytest.param({"a": 1}, id="dict"),
    pytest.param(["new\nline"], id="control-char"),
]


@pytest.mark.parametrize(("value", "expected"), GOOD_TAGS)
def test_validate_tags_accepts(value: Any, expected: list[str]) -> None:
    """Tags come back trimmed, lowercased and de-duplicated, first occurrence first."""
    assert validate_tags(value) == expected


def test_validate_tags_none_is_empty() -> None:
    """No tags at all is the empty list."""
    assert validate_tags(None) == []


@pytest.mark.parametrize("value", BAD_TAGS)
def test_validate_tags_refuses(value: Any) -> None:
    """Too many, too long, empty, blank, non-string or control-char tags are refused."""
    with pytest.raises(ValueError, match="tag"):
        validate_tags(value)


@BOTH_SCHEMAS
@pytest.mark.parametrize(("value", "expected"), GOOD_TAGS)
def test_schemas_normalise_tags(schema: type[BaseModel], value: Any, expected: list[str]) -> None:
    """Both schemas store the normalised tag list."""
    assert build(schema, tags=value).tags == expected  # type: ignore[attr-defined]


@BOTH_SCHEMAS
@pytest.mark.parametrize("value", BAD_TAGS)
def test_schemas_refuse_tags(schema: type[BaseModel], value: Any) -> None:
    """Both schemas refuse the same bad tag lists."""
    assert_refused(schema, "tags", value)


def test_memory_create_tags_default_to_empty_list() -> None:
    """Tags left out are an empty list, not shared between instances."""
    first, second = build(MemoryCreate), build(MemoryCreate)
    assert first.tags == [] and second.tags == []  # type: ignore[attr-defined]
    assert first.tags is not second.tags  # type: ignore[attr-defined]


# --- content -------------------------------------------------------------------------------

GOOD_CONTENT = [
    pytest.param("x", id="one-byte"),
    pytest.param("a" * DEFAULT_MAX_BYTES, id="65536-ascii"),
    pytest.param(EURO * 16_385, id="16385-euro-49155-bytes"),
    pytest.param(EURO * 21_845 + "a", id="21845-euro-plus-a-65536-bytes"),
    pytest.param(GRIN * 16_384, id="16384-emoji-65536-bytes"),
    pytest.param("line one\nline two\ttabbed", id="whitespace"),
]
BAD_CONTENT = [
    pytest.param("", "empty", id="empty"),
    pytest.param("a\x00b", "NUL", id="nul"),
    pytest.param("\x00", "NUL", id="only-nul"),
    pytest.param("a" * (DEFAULT_MAX_BYTES + 1), "65537 bytes", id="65537-ascii"),
    pytest.param(EURO * 21_846, "65538 bytes", id="21846-euro"),
    pytest.param(EURO * 21_845 + "ab", "65537 bytes", id="21845-euro-plus-ab"),
    pytest.param(GRIN * 16_384 + "a", "65537 bytes", id="16384-emoji-plus-a"),
    pytest.param("bad \ud800 surrogate", "UTF-8", id="lone-surrogate"),
]


def test_content_sizes_are_what_the_tables_claim() -> None:
    """The byte counts in the ids above are real (guards the tables themselves)."""
    assert len((EURO * 16_385).encode()) == 49_155
    assert len((EURO * 21_846).encode()) == 65_538
    assert len((GRIN * 16_384).encode()) == DEFAULT_MAX_BYTES


@pytest.mark.parametrize("value", GOOD_CONTENT)
def test_validate_content_accepts(value: str) -> None:
    """1..65,536 bytes of UTF-8 without NUL pass unchanged."""
    assert validate_content(value, DEFAULT_MAX_BYTES) is value


@pytest.mark.parametrize(("value", "message"), BAD_CONTENT)
def test_validate_content_refuses(value: str, message: str) -> None:
    """Empty, NUL, over-long (counted in bytes) and unencodable content is refused."""
    with pytest.raises(ValueError, match=message):
        validate_content(value, DEFAULT_MAX_BYTES)


@BOTH_SCHEMAS
@pytest.mark.parametrize("value", GOOD_CONTENT)
def test_schemas_accept_content(schema: type[BaseModel], value: str) -> None:
    """Both schemas take good content unchanged."""
    assert build(schema, content=value).content == value  # type: ignore[attr-defined]


@BOTH_SCHEMAS
@pytest.mark.parametrize(("value", "message"), BAD_CONTENT)
def test_schemas_refuse_content(schema: type[BaseModel], value: str, message: str) -> None:
    """Both schemas refuse bad content, with the rule's message."""
    with pytest.raises(ValidationError, match=message):
        build(schema, content=value)


@pytest.mark.parametrize(
    ("max_bytes", "value", "ok"),
    [
        (3, EURO, True),
        (2, EURO, False),
        (7, EURO * 2 + "a", True),
        (6, EURO * 2 + "a", False),
        (1, "a", True),
        (1, "ab", False),
    ],
)
def test_validate_content_limit_is_a_parameter(max_bytes: int, value: str, ok: bool) -> None:
    """The limit passed in is the one applied, in bytes, including at small limits."""
    if ok:
        assert validate_content(value, max_bytes) == value
    else:
        with pytest.raises(ValueError, match=f"the limit is {max_bytes} bytes"):
            validate_content(value, max_bytes)


@BOTH_SCHEMAS
@pytest.mark.usefixtures("ten_bytes")
def test_schemas_follow_the_content_limit(schema: type[BaseModel]) -> None:
    """The content limit in force changes what the schemas allow (bytes, not characters)."""
    assert current_content_limit() == 10
    assert build(schema, content="a" * 10).content == "a" * 10  # type: ignore[attr-defined]
    assert build(schema, content=EURO * 3).content == EURO * 3  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="11 bytes"):
        build(schema, content="a" * 11)
    with pytest.raises(ValidationError, match="12 bytes"):
        build(schema, content=EURO * 4)


# --- namespaces ----------------------------------------------------------------------------

GOOD_NAMESPACES = [
    "facts",
    "projects/apollo",
    "a.b-c_d/e",
    "A/B/C/D",
    "x",
    "v1.2",
    "...",
    ".hidden",
    "a" * 200,
    "a/" * 99 + "ab",  # 200 chars in 100 segments
]
BAD_NAMESPACES = [
    "",
    "/a",
    "a/",
    "/",
    "a//b",
    ".",
    "a/./b",
    "..",
    "a/../b",
    "../a",
    "a/..",
    "a b",
    " a",
    "a\n",
    "ä",
    "a\\b",
    "a:b",
    "a" * 201,
]


@pytest.mark.parametrize("value", GOOD_NAMESPACES)
def test_validate_namespace_accepts(value: str) -> None:
    """1..200 chars of `/`-joined [A-Za-z0-9_.-]+ segments pass unchanged."""
    assert len(value) <= 200
    assert validate_namespace(value) == value


@pytest.mark.parametrize("value", BAD_NAMESPACES, ids=repr)
def test_validate_namespace_refuses(value: str) -> None:
    """Empty, too long, bad characters, empty, '.' or '..' segments are refused."""
    with pytest.raises(ValueError, match="namespace"):
        validate_namespace(value)


@pytest.mark.parametrize("value", [None, 5, ["facts"]], ids=repr)
def test_validate_namespace_refuses_non_strings(value: Any) -> None:
    """A namespace is a string."""
    with pytest.raises(ValueError, match="namespace must be a string"):
        validate_namespace(value)


@pytest.mark.parametrize("value", GOOD_NAMESPACES)
def test_memory_create_accepts_namespace(value: str) -> None:
    """MemoryCreate takes the same good namespaces."""
    assert build(MemoryCreate, namespace=value).namespace == value  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", BAD_NAMESPACES, ids=repr)
def test_memory_create_refuses_namespace(value: str) -> None:
    """MemoryCreate refuses the same bad namespaces."""
    assert_refused(MemoryCreate, "namespace", value)


def test_memory_update_cannot_move_a_memory() -> None:
    """Namespace and key are not part of an update (they identify the memory)."""
    update = MemoryUpdate.model_validate({"namespace": "other", "key": "other"})
    assert "namespace" not in update.model_dump()
    assert "key" not in update.model_dump()


# --- keys ----------------------------------------------------------------------------------

DECOMPOSED_E = "e\u0301"
COMPOSED_E = "\u00e9"
GOOD_KEYS = [
    pytest.param("favourite-tea", "favourite-tea", id="plain"),
    pytest.param("two words", "two words", id="inner-space"),
    pytest.param("café/日本語 (v2)", "café/日本語 (v2)", id="unicode"),
    pytest.param(f"caf{DECOMPOSED_E}", f"caf{COMPOSED_E}", id="nfc"),
    pytest.param("k" * 255, "k" * 255, id="255-chars"),
    pytest.param(DECOMPOSED_E * 255, COMPOSED_E * 255, id="510-decomposed-is-255"),
    pytest.param("x", "x", id="one-char"),
]
BAD_KEYS = [
    pytest.param("", id="empty"),
    pytest.param("k" * 256, id="256-chars"),
    pytest.param(COMPOSED_E * 256, id="256-composed"),
    pytest.param(" key", id="leading-space"),
    pytest.param("key ", id="trailing-space"),
    pytest.param("\tkey", id="leading-tab"),
    pytest.param("key\n", id="trailing-newline"),
    pytest.param(" ", id="blank"),
    pytest.param("a\nb", id="newline"),
    pytest.param("a\tb", id="tab"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("a\x7fb", id="del"),
    pytest.param("a\x1bb", id="escape"),
    pytest.param("a\u200bb", id="zero-width-space"),
]


@pytest.mark.parametrize(("value", "expected"), GOOD_KEYS)
def test_validate_key_accepts(value: str, expected: str) -> None:
    """Keys of 1..255 printable chars pass, NFC-normalised (length counted after NFC)."""
    result = validate_key(value)
    assert result == expected
    assert unicodedata.is_normalized("NFC", result)


@pytest.mark.parametrize("value", BAD_KEYS)
def test_validate_key_refuses(value: str) -> None:
    """Empty, over-long, space-padded and control-char keys are refused."""
    with pytest.raises(ValueError, match="key"):
        validate_key(value)


@pytest.mark.parametrize(("value", "expected"), GOOD_KEYS)
def test_memory_create_normalises_key(value: str, expected: str) -> None:
    """MemoryCreate stores the NFC form, so decomposed and composed keys are the same key."""
    assert build(MemoryCreate, key=value).key == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", BAD_KEYS)
def test_memory_create_refuses_key(value: str) -> None:
    """MemoryCreate refuses the same bad keys."""
    assert_refused(MemoryCreate, "key", value)


# --- timestamps ----------------------------------------------------------------------------

TEN_UTC = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
GOOD_TIMESTAMPS = [
    pytest.param("2030-01-01T10:00:00Z", id="z"),
    pytest.param("2030-01-01T10:00:00+00:00", id="plus-zero"),
    pytest.param("2030-01-01T12:00:00+02:00", id="plus-two"),
    pytest.param("2030-01-01T05:00:00-05:00", id="minus-five"),
    pytest.param("2030-01-01T15:30:00+05:30", id="plus-five-thirty"),
    pytest.param("2030-01-01 10:00:00Z", id="space-separator"),
    pytest.param(datetime(2030, 1, 1, 11, 0, tzinfo=timezone(timedelta(hours=1))), id="aware"),
]
BAD_TIMESTAMPS = [
    pytest.param("2030-01-01T10:00:00", "timezone", id="naive-string"),
    pytest.param(datetime(2030, 1, 1, 10, 0), "timezone", id="naive-datetime"),
    pytest.param("tomorrow", "ISO-8601", id="garbage"),
    pytest.param("", "ISO-8601", id="empty"),
    pytest.param("2030-13-01T10:00:00Z", "ISO-8601", id="month-13"),
    pytest.param(1_893_492_000, "ISO-8601", id="epoch-int"),
]


@pytest.mark.parametrize("value", GOOD_TIMESTAMPS)
def test_parse_utc_accepts(value: str | datetime) -> None:
    """'Z' and explicit offsets give the same instant as an aware UTC datetime."""
    parsed = parse_utc(value, "expires_at")
    assert parsed == TEN_UTC
    assert parsed is not None and parsed.tzinfo is UTC
    assert parsed.hour == 10


def test_parse_utc_none() -> None:
    """No timestamp stays None."""
    assert parse_utc(None, "expires_at") is None


@pytest.mark.parametrize(("value", "message"), BAD_TIMESTAMPS)
def test_parse_utc_refuses(value: Any, message: str) -> None:
    """Naive timestamps and garbage are refused, naming the field."""
    with pytest.raises(ValueError, match=message) as info:
        parse_utc(value, "expires_at")
    assert "expires_at" in str(info.value)


def test_ensure_utc() -> None:
    """Aware datetimes are converted to UTC; naive ones are refused, None passes."""
    converted = ensure_utc(datetime(2030, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))))
    assert converted == TEN_UTC and converted is not None and converted.tzinfo is UTC
    assert converted.hour == 10
    assert ensure_utc(None) is None
    with pytest.raises(ValueError, match="timezone-aware"):
        ensure_utc(datetime(2030, 1, 1, 10, 0))


@BOTH_SCHEMAS
@pytest.mark.parametrize(
    "value",
    ["2030-01-01T12:00:00+02:00", "2030-01-01T10:00:00Z", TEN_UTC.astimezone(timezone.min)],
    ids=["string-offset", "string-z", "datetime-minus-23:59"],
)
def test_schemas_store_expires_at_in_utc(schema: type[BaseModel], value: str | datetime) -> None:
    """expires_at given with any offset is kept as the same instant, in UTC."""
    expires_at = build(schema, expires_at=value).expires_at  # type: ignore[attr-defined]
    assert expires_at == TEN_UTC
    assert expires_at.tzinfo is UTC
    assert expires_at.hour == 10


@BOTH_SCHEMAS
@pytest.mark.parametrize(
    "value", ["2030-01-01T10:00:00", datetime(2030, 1, 1, 10, 0), "soon"], ids=repr
)
def test_schemas_refuse_naive_expires_at(schema: type[BaseModel], value: Any) -> None:
    """A naive or unparseable expires_at is refused instead of being taken for local time."""
    assert_refused(schema, "expires_at", value)


# --- update-only fields --------------------------------------------------------------------


def test_memory_update_is_all_optional() -> None:
    """An empty update validates and sets nothing."""
    assert MemoryUpdate().model_dump(exclude_unset=True) == {}


@pytest.mark.parametrize(("value", "ok"), [(1, True), (7, True), (0, False), (-1, False)])
def test_memory_update_version(value: int, ok: bool) -> None:
    """The version an editor saw is 1 or more."""
    if ok:
        assert MemoryUpdate(version=value).version == value
    else:
        assert_refused(MemoryUpdate, "version", value)
