"""Each namespace as an MCP resource a client can browse: `memory://namespace/NAME`.

Listing the resources lists the acting user's namespaces that hold active memories;
reading one gives its newest active memories, as GET /api/v1/memories?namespace=NAME
does. Browsing is listing, not recall: no access is counted.
"""

from __future__ import annotations

import secrets

import mcp_types as types
from sqlmodel import SQLModel

from webapp.api.schemas import MemoryPublic
from webapp.db import Database
from webapp.errors import InvalidInput
from webapp.models import BrowseQuery
from webapp.services.browse import browse
from webapp.services.cursors import CursorSigner
from webapp.services.namespaces import namespace_health
from webapp.services.principal import Principal
from webapp.validation import validate_namespace

PREFIX = "memory://namespace/"
NEWEST = 200
"""How many memories reading a namespace gives (the newest; the API's largest page)."""
_signer = CursorSigner(secrets.token_urlsafe(32))
"""Browsing needs a signer for its page cursors; these cursors are never handed out."""


class NamespaceMemories(SQLModel):
    """A namespace resource's content: its newest active memories, and how many it has
    (exact up to 1,000; count_capped past that)."""

    namespace: str
    memories: list[MemoryPublic]
    count: int
    count_capped: bool


async def list_namespaces(db: Database, *, principal: Principal) -> list[types.Resource]:
    """A resource for each of principal's namespaces with active memories, by name."""
    return [
        types.Resource(
            uri=PREFIX + health.namespace,
            name=health.namespace,
            description=f"{health.active} active memories in {health.namespace}",
            mime_type="application/json",
        )
        for health in await namespace_health(db, principal=principal)
        if health.active
    ]


def namespace_of(uri: str) -> str:
    """The namespace a resource URI names; InvalidInput for any other URI."""
    if not uri.startswith(PREFIX):
        raise InvalidInput(f"no such resource: {uri!r} (namespaces are {PREFIX}NAME)")
    try:
        return validate_namespace(uri.removeprefix(PREFIX))
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


async def read_namespace(db: Database, *, principal: Principal, uri: str) -> NamespaceMemories:
    """The newest active memories of the namespace uri names (none if it has none)."""
    namespace = namespace_of(uri)
    page = await browse(
        db,
        principal=principal,
        query=BrowseQuery(namespace=namespace, limit=NEWEST),
        signer=_signer,
    )
    return NamespaceMemories(
        namespace=namespace,
        memories=[MemoryPublic.model_validate(row._asdict()) for row in page.items],
        count=page.count,
        count_capped=page.count_capped,
    )
