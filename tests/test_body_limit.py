"""Request bodies over the limit get 413 in the request's language, read no further than
the limit, chunked or not (issue 13, E); on SQLite and on PostgreSQL, in-process and
through a real uvicorn server with a raw chunked request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tests.browser_support import LiveServer
from tests.factories import make_memory, make_user
from tests.web_support import Visitor, parse
from webapp.web.security import BodyLimit

LIMIT = 1024 * 1024
"""MAX_BODY_BYTES's default, which the tests' settings keep."""
CHUNK = 64 * 1024
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data; boundary=xyz"


class Chunks:
    """A chunked request body of `count` chunks that counts how many were read."""

    def __init__(self, content_type: str, count: int = 64) -> None:
        self.count = count
        self.read = 0
        self.first = b"content=" if content_type == FORM else b""
        if content_type == MULTIPART:
            self.first = b'--xyz\r\nContent-Disposition: form-data; name="content"\r\n\r\n'

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for number in range(self.count):
            self.read += 1
            yield (self.first if number == 0 else b"") + b"x" * CHUNK

    @property
    def most_read(self) -> int:
        """The chunks a reader that stops once past the limit takes at most."""
        return LIMIT // CHUNK + 1


def _assert_json_413(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "request body too large (limit 1,048,576 bytes)"}


def _assert_413_page(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text[:300]
    assert response.headers["content-type"].startswith("text/html")
    page = parse(response)
    assert page.select_one(".error-page h1").get_text() == "413"
    assert "1,048,576 bytes" in page.select_one(".error-message").get_text()
    assert "Content-Security-Policy" in response.headers


async def test_a_chunked_api_body_over_the_limit_is_a_json_413(visitor: Visitor) -> None:
    """FastAPI's body parsing used to turn the limit into a 400 "error parsing the body"
    after reading it all; the body is not read past the limit."""
    body = Chunks("application/json")
    response = await visitor.client.put(
        "/api/v1/memories",
        content=body,
        headers={"content-type": "application/json", "authorization": "Bearer x"},
    )
    _assert_json_413(response)
    assert body.read <= body.most_read < body.count


@pytest.mark.parametrize("content_type", [FORM, MULTIPART])
@pytest.mark.parametrize("path", ["/login", "/memories/{id}/edit", "/trash/restore"])
async def test_a_chunked_form_over_the_limit_is_the_413_page(
    session: AsyncSession, visitor: Visitor, path: str, content_type: str
) -> None:
    """Forms parsed by FastAPI (/login), by a dependency (the CSRF check) or by a route
    (the edits): each one stops at the limit with the 413 page, and nothing changes."""
    ann = await make_user(session, username="ann")
    memory = await make_memory(session, user=ann, content="before")
    if path != "/login":
        await visitor.log_in("ann")
    body = Chunks(content_type)
    response = await visitor.client.post(
        path.format(id=memory.id),
        content=body,
        headers={"content-type": content_type, "accept": "text/html"},
    )
    _assert_413_page(response)
    assert body.read <= body.most_read
    await session.commit()  # a new transaction: see what the app has written since
    await session.refresh(memory)
    assert (memory.content, memory.version) == ("before", 1)


@pytest.mark.parametrize(
    ("path", "headers", "html"),
    [
        ("/api/v1/memories", {"accept": "text/html"}, False),
        ("/login", {"accept": "text/html"}, True),
        ("/login", {"hx-request": "true"}, True),
        ("/login", {}, False),
    ],
    ids=["api", "page", "htmx", "page-no-html"],
)
async def test_a_declared_length_over_the_limit_is_refused_in_the_request_language(
    visitor: Visitor, path: str, headers: dict[str, str], html: bool
) -> None:
    """Refused before anything is read: JSON under /api/v1 (even for a browser), the error
    page for a browser or htmx on a page, JSON for other clients."""
    response = await visitor.client.request(
        "PUT" if path.startswith("/api/") else "POST",
        path,
        content=b"x" * (LIMIT + 1),
        headers={"content-type": FORM, **headers},
    )
    if html:
        _assert_413_page(response)
    else:
        _assert_json_413(response)


async def _unfinished_chunked(
    server: LiveServer, method: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """Send a chunked body just past the limit and never end it: only a server that stops
    reading at the limit can answer. Returns the status, headers and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        chunk = b"x" * CHUNK
        for _ in range(LIMIT // CHUNK + 1):
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        status = int((await reader.readline()).split()[1])
        answer: dict[str, str] = {}
        while (line := (await reader.readline()).decode().strip()) != "":
            name, _, value = line.partition(":")
            answer[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(answer["content-length"]))
        return status, answer, body
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("PUT", "/api/v1/memories", {"Content-Type": "application/json"}),
        ("POST", "/login", {"Content-Type": FORM, "Accept": "text/html"}),
    ],
    ids=["api", "login-form"],
)
async def test_uvicorn_answers_an_endless_chunked_body_with_413(
    live_server: LiveServer, method: str, path: str, headers: dict[str, str]
) -> None:
    """The check that found the 400, with a real server and a raw chunked request."""
    status, answer, body = await asyncio.wait_for(  # a guard against a hang, not a measure
        _unfinished_chunked(live_server, method, path, headers), timeout=120
    )
    assert status == 413, body[:300]
    if path.startswith("/api/"):
        assert answer["content-type"] == "application/json"
        assert b"1,048,576 bytes" in body
    else:
        assert answer["content-type"].startswith("text/html")
        assert b"<h1>413</h1>" in body


@pytest.fixture(scope="module")
def echo_app() -> FastAPI:
    """A tiny app behind BodyLimit: 1 KiB for every path, 4 KiB for /upload."""
    app = FastAPI()

    async def size(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    app.add_api_route("/upload", size, methods=["POST"])
    app.add_api_route("/other", size, methods=["POST"])
    app.add_middleware(BodyLimit, max_bytes=1024, limits={"/upload": 4096})
    return app


@pytest.mark.parametrize(
    ("path", "size", "status"),
    [("/upload", 3000, 200), ("/upload", 5000, 413), ("/other", 1024, 200), ("/other", 1025, 413)],
)
@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "declared"])
async def test_a_path_can_have_its_own_limit(
    echo_app: FastAPI, path: str, size: int, status: int, chunked: bool
) -> None:
    """The hook for uploads (an import) that may be larger than any form."""

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, size, 500):
            yield b"x" * min(500, size - start)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=echo_app), base_url="http://testserver"
    ) as client:
        response = await client.post(path, content=stream() if chunked else b"x" * size)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json() == {"size": size}
