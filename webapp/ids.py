"""The one rule for what number can name a row, shared by the API's paths and the pages' URLs
and forms: ids and versions are 32-bit integer columns on PostgreSQL."""

from __future__ import annotations

INT4_MAX = 2**31 - 1
"""The largest id (and version) a row can have. SQLite would hold larger ones, but both
databases follow the same rule, so a number past it names nothing on either."""

_MAX_DIGITS = len(str(INT4_MAX))


def positive_int4(text: str) -> int | None:
    """The number text writes in ASCII digits if it is 1 to INT4_MAX, else None.

    ASCII only: str.isdigit() also accepts '²', which int() refuses; and the length is
    checked first, as int() refuses texts of over 4,300 digits.
    """
    if not (0 < len(text) <= _MAX_DIGITS and text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 1 <= value <= INT4_MAX else None
