"""Secrets are compared in constant time: CSRF tokens and the session tag of an import upload.

Session cookies and API tokens are not compared at all: they are looked up by the SHA-256
of a 256-bit random secret (SECURITY.md, "Comparing secrets"), which the tests of
tests/test_web_auth.py and tests/test_api_tokens_auth.py exercise.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from webapp.errors import NotFound
from webapp.services.principal import Principal
from webapp.services.transfer import uploads
from webapp.services.transfer.uploads import DryRunReport, load_upload
from webapp.settings import Settings
from webapp.web import deps
from webapp.web.deps import tokens_match

UPLOAD_ID = "AAAAAAAAAAAAAAAAAAAAAA"


class Spy:
    """hmac.compare_digest, recording each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []
        self.real = hmac.compare_digest

    def __call__(self, a: Any, b: Any) -> bool:
        self.calls.append((a, b))
        return self.real(a, b)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    """Replaces hmac.compare_digest for the test."""
    recorder = Spy()
    monkeypatch.setattr(hmac, "compare_digest", recorder)
    return recorder


@pytest.mark.parametrize(
    ("expected", "given", "match"),
    [
        ("abc123", "abc123", True),
        ("abc123", "abc124", False),
        ("abc123", "abc12", False),
        ("abc123", "", False),
        ("", "", False),  # an empty token (no session, no cookie) never matches
        ("tökén", "tökén", True),  # non-ASCII text is compared as UTF-8 bytes, not refused
    ],
)
def test_tokens_match(spy: Spy, expected: str, given: str, match: bool) -> None:
    """CSRF tokens: equal and non-empty, compared with hmac.compare_digest."""
    assert tokens_match(expected, given) is match
    assert deps.hmac.compare_digest is spy
    if expected:
        assert spy.calls == [(expected.encode(), given.encode())]


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'never-opened.db'}",
        secret_key="test-secret-key",
        import_dir=tmp_path / "imports",
    )


def _upload(settings: Settings, *, user_id: int, csrf_token: str) -> None:
    """An upload's owner record as store_upload writes it."""
    report = DryRunReport(upload_id=UPLOAD_ID, filename="memories.jsonl", size=10)
    owner = {"user_id": user_id, "session": uploads._session_tag(csrf_token), "at": 0}
    meta = uploads.import_dir(settings) / f"{UPLOAD_ID}.json"
    meta.write_text(json.dumps({"owner": owner, "report": asdict(report)}))


def test_an_upload_is_its_sessions_only(tmp_path: Path, spy: Spy) -> None:
    """load_upload: the owner's session gets the report; another session of the same user
    or another user is NotFound; the session tags are compared with compare_digest."""
    settings = _settings(tmp_path)
    _upload(settings, user_id=7, csrf_token="session-one")
    admin = Principal(user_id=7, username="root", is_admin=True)
    report = load_upload(settings, upload_id=UPLOAD_ID, principal=admin, csrf_token="session-one")
    assert report.filename == "memories.jsonl"
    assert spy.calls == [(uploads._session_tag("session-one"),) * 2]

    other_admin = Principal(user_id=8, username="ops", is_admin=True)
    for principal, token in ((admin, "session-two"), (other_admin, "session-one")):
        with pytest.raises(NotFound):
            load_upload(settings, upload_id=UPLOAD_ID, principal=principal, csrf_token=token)


def test_a_damaged_owner_record_is_not_found(tmp_path: Path) -> None:
    """An owner record without a session tag (a hand-edited file) refuses, not a 500."""
    settings = _settings(tmp_path)
    meta = uploads.import_dir(settings) / f"{UPLOAD_ID}.json"
    report = asdict(DryRunReport(upload_id=UPLOAD_ID, filename="x.jsonl", size=1))
    meta.write_text(json.dumps({"owner": {"user_id": 7}, "report": report}))
    admin = Principal(user_id=7, username="root", is_admin=True)
    with pytest.raises(NotFound):
        load_upload(settings, upload_id=UPLOAD_ID, principal=admin, csrf_token="session-one")
