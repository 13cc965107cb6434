"""A LangGraph store (`BaseStore`) backed by a memory-admin server over its JSON API.

    pip install 'memory-admin[langgraph]'

    from webapp.langgraph_store import MemoryAdminStore
    store = MemoryAdminStore("http://127.0.0.1:8000", token="mat_...")
    graph = builder.compile(store=store)

How LangGraph's model maps onto memory-admin's:

- A namespace tuple is our namespace with its labels joined by '/': ("users", "ann") is
  `users/ann`. Labels follow our rule (letters, digits, '_', '-'; LangGraph itself refuses
  '.'); one that does not is refused on put with the server's message.
- A value (a dict) is kept as its JSON text in the memory's content, so the server's
  full-text and semantic search read it. Reading a memory that another agent wrote in
  plain words gives {"content": "..."}.
- `search(prefix, query=...)` is the server's ranked search (its score is the item's
  score); without a query it lists, newest first. `filter` is applied to the values here,
  with LangGraph's operators ($eq, $ne, $gt, $gte, $lt, $lte).
- `get` is an agent's recall: it counts an access. Listing does not.
- `ttl` (minutes) becomes the memory's expiry; reading does not extend it (refresh_ttl is
  ignored). `index` is ignored: the server indexes every memory.
- `delete` is a soft delete: a person can restore the memory from the admin's trash.

The store acts as its token's user; an admin's token may pass `user=` to act for another.
The logic of each operation is written once, as a generator of HTTP calls, and driven by
an httpx.Client (batch) or an httpx.AsyncClient (abatch).
"""

from __future__ import annotations

import json
import math
from collections.abc import Generator, Iterable
from typing import Any, NamedTuple, TypeVar

import httpx
from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

API = "/api/v1"
SEARCH_MAX = 100
"""The most results one ranked search returns (the API's limit)."""
PAGE = 200
"""Memories per page when listing (the API's limit)."""

T = TypeVar("T")


class Call(NamedTuple):
    """One HTTP request an operation needs."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    body: dict[str, Any] | None = None


Plan = Generator[Call, httpx.Response, T]
"""An operation: yields the calls it needs, receives each response, returns its result."""


class MemoryAdminStoreError(RuntimeError):
    """The server refused a request: its status and its `detail`."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"memory-admin answered {status}: {detail}")
        self.status = status
        self.detail = detail


def to_namespace(labels: tuple[str, ...]) -> str:
    """LangGraph's namespace tuple as memory-admin's namespace."""
    return "/".join(labels)


def from_namespace(namespace: str) -> tuple[str, ...]:
    """memory-admin's namespace as LangGraph's tuple."""
    return tuple(namespace.split("/"))


def _value(content: str) -> dict[str, Any]:
    """The value a memory's content holds: the JSON object the store wrote, or else the
    text itself as {"content": ...}."""
    try:
        value = json.loads(content)
    except ValueError:
        return {"content": content}
    return value if isinstance(value, dict) else {"content": content}


def _fields(memory: dict[str, Any]) -> dict[str, Any]:
    """An item's fields from a memory as the API gives it."""
    return {
        "namespace": from_namespace(memory["namespace"]),
        "key": memory["key"],
        "value": _value(memory["content"]),
        "created_at": memory["created_at"],
        "updated_at": memory["updated_at"],
    }


def _item(memory: dict[str, Any]) -> Item:
    return Item(**_fields(memory))


def _search_item(memory: dict[str, Any], score: float | None) -> SearchItem:
    return SearchItem(**_fields(memory), score=score)


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text)
    except ValueError:
        return response.text


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise MemoryAdminStoreError(response.status_code, _detail(response))
    return response


# --- filters and namespace matching, as LangGraph's InMemoryStore has them ---------------


def _compare(value: Any, wanted: Any) -> bool:
    """Whether value matches a filter's wanted value (a plain value, a nested filter, or
    operators)."""
    if isinstance(wanted, dict):
        if any(name.startswith("$") for name in wanted):
            return all(_operator(value, name, operand) for name, operand in wanted.items())
        return isinstance(value, dict) and all(
            _compare(value.get(name), inner) for name, inner in wanted.items()
        )
    if isinstance(wanted, list | tuple):
        return (
            isinstance(value, list | tuple)
            and len(value) == len(wanted)
            and all(_compare(v, w) for v, w in zip(value, wanted, strict=True))
        )
    return bool(value == wanted)


def _operator(value: Any, name: str, operand: Any) -> bool:
    if name == "$eq":
        return bool(value == operand)
    if name == "$ne":
        return bool(value != operand)
    if value is None:
        return False
    comparisons = {
        "$gt": float.__gt__,
        "$gte": float.__ge__,
        "$lt": float.__lt__,
        "$lte": float.__le__,
    }
    if name not in comparisons:
        raise ValueError(f"Unsupported operator: {name}")
    return bool(comparisons[name](float(value), float(operand)))


def matches_filter(value: dict[str, Any], wanted: dict[str, Any] | None) -> bool:
    """Whether a value passes a search's filter."""
    return not wanted or all(_compare(value.get(name), w) for name, w in wanted.items())


def _matches(condition: MatchCondition, labels: tuple[str, ...]) -> bool:
    path = condition.path
    if len(labels) < len(path):
        return False
    pairs = (
        zip(labels, path, strict=False)
        if condition.match_type == "prefix"
        else zip(reversed(labels), reversed(path), strict=False)
    )
    return all(wanted == "*" or label == wanted for label, wanted in pairs)


# --- the store ---------------------------------------------------------------------------


class MemoryAdminStore(BaseStore):
    """LangGraph's long-term memory store on a memory-admin server (module docstring)."""

    supports_ttl = True

    def __init__(
        self,
        url: str,
        *,
        token: str,
        user: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        """url: the server (`http://host:port`); token: an API token
        (`memory-admin token create USERNAME`); user: for an admin's token, whom to act for."""
        self.url = url.rstrip("/")
        self.user = user
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = timeout
        self._client: httpx.Client | None = None
        self._async_client: httpx.AsyncClient | None = None

    # -- transports -----------------------------------------------------------------------

    def _sync(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.url + API, headers=self._headers, timeout=self._timeout
            )
        return self._client

    def _async(self) -> httpx.AsyncClient:
        if self._async_client is None:
            self._async_client = httpx.AsyncClient(
                base_url=self.url + API, headers=self._headers, timeout=self._timeout
            )
        return self._async_client

    def _params(self, params: dict[str, Any] | None) -> dict[str, Any] | None:
        if self.user is None:
            return params
        return {**(params or {}), "user": self.user}

    def _run(self, plan: Plan[T]) -> T:
        client = self._sync()
        try:
            call = next(plan)
            while True:
                response = client.request(
                    call.method, call.path, params=self._params(call.params), json=call.body
                )
                call = plan.send(response)
        except StopIteration as done:
            return done.value

    async def _arun(self, plan: Plan[T]) -> T:
        client = self._async()
        try:
            call = next(plan)
            while True:
                response = await client.request(
                    call.method, call.path, params=self._params(call.params), json=call.body
                )
                call = plan.send(response)
        except StopIteration as done:
            return done.value

    def close(self) -> None:
        """Close the synchronous HTTP client (the async one: aclose)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close both HTTP clients."""
        self.close()
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None

    # -- BaseStore ------------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ops in order, one or more HTTP requests each; results in the same order."""
        return [self._run(self._plan(op)) for op in ops]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """batch, on the async HTTP client."""
        return [await self._arun(self._plan(op)) for op in ops]

    def _plan(self, op: Op) -> Plan[Result]:
        if isinstance(op, GetOp):
            return self._get(op)
        if isinstance(op, PutOp):
            return self._put(op)
        if isinstance(op, SearchOp):
            return self._search(op)
        if isinstance(op, ListNamespacesOp):
            return self._list_namespaces(op)
        raise ValueError(f"Unknown operation type: {type(op)}")

    # -- the operations, each a plan of HTTP calls ---------------------------------------------

    def _get(self, op: GetOp) -> Plan[Item | None]:
        params = {"namespace": to_namespace(op.namespace), "key": op.key}
        response = yield Call("GET", "/recall", params)
        # 404: absent, deleted or expired; 422: a namespace or key no memory can have.
        if response.status_code in (404, 422):
            return None
        return _item(_check(response).json())

    def _put(self, op: PutOp) -> Plan[None]:
        if op.value is None:
            yield from self._delete(op.namespace, op.key)
            return None
        if not op.namespace:
            raise InvalidNamespaceError("Namespace cannot be empty.")
        body: dict[str, Any] = {
            "namespace": to_namespace(op.namespace),
            "key": op.key,
            "content": json.dumps(op.value, ensure_ascii=False),
        }
        if op.ttl is not None:
            body["ttl_seconds"] = max(1, math.ceil(op.ttl * 60))
        response = yield Call("PUT", "/memories", body=body)
        if response.status_code == 422:
            problems = _detail(response)
            if isinstance(problems, list) and any(
                problem.get("loc", [])[-1:] == ["namespace"] for problem in problems
            ):
                raise InvalidNamespaceError(
                    f"namespace {op.namespace} cannot be stored: "
                    + "; ".join(str(problem.get("msg")) for problem in problems)
                )
        _check(response)
        return None

    def _delete(self, labels: tuple[str, ...], key: str) -> Plan[None]:
        """Soft-delete the memory at labels/key; nothing if there is none. The API deletes
        by id, so the memory is recalled first."""
        found = yield Call("GET", "/recall", {"namespace": to_namespace(labels), "key": key})
        if found.status_code in (404, 422):
            return None
        memory_id = _check(found).json()["id"]
        response = yield Call("DELETE", f"/memories/{memory_id}")
        if response.status_code != 404:  # deleted meanwhile by someone else: as wanted
            _check(response)
        return None

    def _search(self, op: SearchOp) -> Plan[list[SearchItem]]:
        prefix = to_namespace(op.namespace_prefix) + "/" if op.namespace_prefix else None
        wanted = op.offset + op.limit
        found: list[SearchItem] = []
        if op.query:
            # Ranked: the best SEARCH_MAX at most, filtered here.
            body: dict[str, Any] = {"query": op.query, "limit": SEARCH_MAX}
            if prefix is not None:
                body["namespace"] = prefix
            response = yield Call("POST", "/search", body=body)
            for memory in _check(response).json()["items"]:
                result = _search_item(memory, memory["score"])
                if matches_filter(result.value, op.filter):
                    found.append(result)
            return found[op.offset : wanted]
        # Without a query: newest first, page after page until enough match the filter.
        params: dict[str, Any] = {"limit": PAGE, "sort": "-updated_at"}
        if prefix is not None:
            params["namespace"] = prefix
        while len(found) < wanted:
            response = yield Call("GET", "/memories", dict(params))
            page = _check(response).json()
            for memory in page["items"]:
                result = _search_item(memory, None)
                if matches_filter(result.value, op.filter):
                    found.append(result)
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        return found[op.offset : wanted]

    def _list_namespaces(self, op: ListNamespacesOp) -> Plan[list[tuple[str, ...]]]:
        response = yield Call("GET", "/namespaces")
        namespaces = [
            from_namespace(row["namespace"]) for row in _check(response).json() if row["active"]
        ]
        if op.match_conditions:
            namespaces = [
                labels
                for labels in namespaces
                if all(_matches(condition, labels) for condition in op.match_conditions)
            ]
        if op.max_depth is not None:
            namespaces = sorted({labels[: op.max_depth] for labels in namespaces})
        else:
            namespaces = sorted(namespaces)
        return namespaces[op.offset : op.offset + op.limit]
