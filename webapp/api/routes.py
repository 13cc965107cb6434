"""The routes of /api/v1: each one validates, calls the service layer and shapes the reply."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BeforeValidator
from sqlmodel import SQLModel

from webapp.api.schemas import (
    ContextBlock,
    MemoryPage,
    MemoryPatch,
    MemoryPublic,
    MemoryPut,
    NamespaceCounts,
    SearchRequestBody,
    SearchResults,
)
from webapp.errors import InvalidInput, MemoryAdminError
from webapp.ids import INT4_MAX
from webapp.models import BrowseQuery, ContextRequest, Importance, MemoryKey, Namespace
from webapp.request_scope import DatabaseDep, database
from webapp.services.browse import browse
from webapp.services.context import build_context
from webapp.services.cursors import CursorSigner
from webapp.services.memories import (
    delete_memory,
    get_memory,
    recall,
    remember,
    restore_memory,
    update_memory,
)
from webapp.services.namespaces import namespace_health
from webapp.services.principal import Principal
from webapp.services.search import search
from webapp.services.tokens import bearer_principal
from webapp.services.users import act_as
from webapp.types import utcnow
from webapp.validation import number_from_text

API_PREFIX = "/api/v1"


class ApiError(SQLModel):
    """Every error: a message, or for invalid input the list of what was wrong."""

    detail: str | list[dict[str, Any]]


class BadRequest(MemoryAdminError):
    """A request the API cannot read: a cursor that was altered or is for another sort."""

    status_code = 400


def _error(description: str) -> dict[str, Any]:
    return {"model": ApiError, "description": description}


Responses = dict[int | str, dict[str, Any]]
ALWAYS: Responses = {
    400: _error("A body that is not JSON, or an unknown query parameter"),
    422: _error("Invalid input: a message, or the list of what was wrong"),
    401: _error("No bearer token, or an unknown or revoked one"),
    404: _error("No such memory or user, or not yours"),
    413: _error("The request body is over the size limit"),
    503: _error("The database is unavailable"),
}
CONFLICT: Responses = {409: _error("The memory is at another version than the one given")}

bearer = HTTPBearer(auto_error=False, description="An API token: `memory-admin token create`")


async def _known_parameters_only(request: Request) -> None:
    """400 for a query parameter the route does not take: a mistyped `user=` must not
    quietly act for the token's own user (unknown names are a 400)."""
    unknown = sorted(set(request.query_params) - _query_names(request))
    if unknown:
        raise BadRequest(f"unknown query parameter: {', '.join(unknown)}")


def _query_names(request: Request) -> frozenset[str]:
    """The query parameters the route takes, as its OpenAPI description lists them."""
    names: dict[tuple[str, str], frozenset[str]] | None = getattr(
        request.app.state, "api_query_names", None
    )
    if names is None:
        names = {
            (method.upper(), path): frozenset(
                parameter["name"]
                for parameter in operation.get("parameters", [])
                if parameter["in"] == "query"
            )
            for path, operations in request.app.openapi()["paths"].items()
            for method, operation in operations.items()
        }
        request.app.state.api_query_names = names
    path = request.scope["route"].path
    if not path.startswith(API_PREFIX):  # the route as declared, before include_router
        path = API_PREFIX + path
    return names.get((request.method, path), frozenset())


router = APIRouter(
    tags=["memories"], responses=ALWAYS, dependencies=[Depends(_known_parameters_only)]
)


MemoryId = Annotated[int, Path(ge=1, le=INT4_MAX, description="The memory's id")]
"""Ids are 32-bit on PostgreSQL (webapp.ids): a larger number names no memory, and is
refused (422) as the schema says, before any query."""


async def _token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The principal a bearer token acts as; Unauthorized otherwise (never a cookie)."""
    secret = None
    if credentials is not None and credentials.scheme.lower() == "bearer":
        secret = credentials.credentials
    return await bearer_principal(database(request), secret=secret)


UserParameter = Annotated[
    str | None,
    Query(
        max_length=150,
        description="Admins' tokens only: act for this user instead of the token's own",
    ),
]


async def _acting(
    request: Request, principal: Annotated[Principal, Depends(_token)], user: UserParameter = None
) -> Principal:
    return await act_as(database(request), principal=principal, username=user)


Acting = Annotated[Principal, Depends(_acting)]


ImportanceParameter = Annotated[Importance, BeforeValidator(number_from_text)]
"""Importance from a query string: the rule itself takes JSON numbers only."""


class MemoryListQuery(BrowseQuery):
    """GET /api/v1/memories's parameters: the browse filters, `limit`, and `user` (whom an
    admin's token acts for), with importance bounds read from the query string."""

    min_importance: ImportanceParameter | None = None
    max_importance: ImportanceParameter | None = None


@router.put(
    "/memories",
    response_model=MemoryPublic,
    status_code=200,
    responses={201: {"model": MemoryPublic, "description": "Created"}, **CONFLICT},
    summary="Remember: create or update the memory at namespace + key",
)
async def put_memory(
    body: MemoryPut, response: Response, db: DatabaseDep, principal: Acting
) -> Any:
    """201 with the new memory, or 200 with the updated one (a soft-deleted one is
    revived). With `version`, the write is refused with 409 unless the memory is at it."""
    result = await remember(
        db, principal=principal, data=body.as_create(utcnow()), expected_version=body.version
    )
    response.status_code = 201 if result.created else 200
    return result.memory


@router.get(
    "/memories",
    response_model=MemoryPage,
    responses={400: _error("An unknown parameter or sort, or a bad cursor")},
    summary="Browse memories with the browse filters, a page at a time",
)
async def list_memories(
    request: Request,
    query: Annotated[MemoryListQuery, Query()],
    db: DatabaseDep,
    token: Annotated[Principal, Depends(_token)],
) -> Any:
    """One page (keyset cursors to the pages before and after it) and a count that is
    exact up to 1,000 (`count_capped` past that). Listing is not an access."""
    principal = await act_as(db, principal=token, username=query.user)
    signer: CursorSigner = request.app.state.cursor_signer
    try:  # the user is the scope now, not a filter
        page = await browse(
            db, principal=principal, query=query.model_copy(update={"user": None}), signer=signer
        )
    except InvalidInput as exc:
        raise BadRequest(str(exc)) from None
    return MemoryPage(
        items=[MemoryPublic.model_validate(row._asdict()) for row in page.items],
        next_cursor=page.next_cursor,
        prev_cursor=page.prev_cursor,
        count=page.count,
        count_capped=page.count_capped,
    )


@router.get(
    "/memories/{memory_id}",
    response_model=MemoryPublic,
    summary="One memory by id",
)
async def read_memory(
    memory_id: MemoryId,
    db: DatabaseDep,
    principal: Acting,
    include_deleted: Annotated[bool, Query(description="Also a soft-deleted memory")] = False,
) -> Any:
    """The memory (not an access); a soft-deleted one is 404 unless include_deleted."""
    return await get_memory(
        db, principal=principal, memory_id=memory_id, include_deleted=include_deleted
    )


@router.patch(
    "/memories/{memory_id}",
    response_model=MemoryPublic,
    responses=CONFLICT,
    summary="Change a memory's content, tags, importance or expiry",
)
async def patch_memory(
    memory_id: MemoryId, body: MemoryPatch, db: DatabaseDep, principal: Acting
) -> Any:
    """The fields given change (`expires_at: null` clears the expiry); `version` must be
    the memory's current one, else 409 and nothing changes."""
    return await update_memory(db, principal=principal, memory_id=memory_id, changes=body)


@router.delete(
    "/memories/{memory_id}",
    response_model=MemoryPublic,
    summary="Soft-delete a memory (restore undoes it)",
)
async def remove_memory(memory_id: MemoryId, db: DatabaseDep, principal: Acting) -> Any:
    """The memory as deleted; deleting it again is 404."""
    return await delete_memory(db, principal=principal, memory_id=memory_id)


@router.post(
    "/memories/{memory_id}/restore",
    response_model=MemoryPublic,
    summary="Restore a soft-deleted memory",
)
async def undelete_memory(memory_id: MemoryId, db: DatabaseDep, principal: Acting) -> Any:
    """The memory as restored; a memory that is not deleted is 404."""
    return await restore_memory(db, principal=principal, memory_id=memory_id)


@router.get(
    "/recall",
    response_model=MemoryPublic,
    summary="Recall the memory at namespace + key (counts an access)",
)
async def recall_memory(
    namespace: Annotated[Namespace, Query(max_length=200)],
    key: Annotated[MemoryKey, Query(max_length=255)],
    db: DatabaseDep,
    principal: Acting,
) -> Any:
    """The active memory at namespace/key; 404 if there is none, or it is deleted or
    expired."""
    return await recall(db, principal=principal, namespace=namespace, key=key)


@router.post("/search", response_model=SearchResults, summary="Ranked search (counts access)")
async def search_memories(body: SearchRequestBody, db: DatabaseDep, principal: Acting) -> Any:
    """The best-ranked active memories, best first, each with `score` and the
    `score_components` it sums; each one returned counts as an access."""
    return SearchResults.of(await search(db, principal=principal, request=body))


@router.post(
    "/context",
    response_model=ContextBlock,
    summary="The best-ranked memories as one prompt-ready text block",
)
async def context_block(body: ContextRequest, db: DatabaseDep, principal: Acting) -> Any:
    """At most max_chars characters, most relevant first, a line per memory:
    `[id] namespace/key: content`; `ids` lists them in order. The memories in the block
    count as accessed."""
    return ContextBlock.of(await build_context(db, principal=principal, request=body))


@router.get(
    "/namespaces",
    response_model=list[NamespaceCounts],
    summary="Every namespace with its memories per state",
)
async def list_namespaces(db: DatabaseDep, principal: Acting) -> Any:
    """Sorted by name."""
    found = await namespace_health(db, principal=principal)
    return [NamespaceCounts.of(health) for health in found]
