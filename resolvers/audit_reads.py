"""Which child records a request read, collected while it executes, written to the audit trail after.

Resolvers report to the request's `ReadRecorder`: a child looked up (found or not), a section returned
or failed, a field or section denied, a child outside the caller's scope. Reads are keyed by A-number,
so a child named twice in one query (aliases, duplicates in `children`) is one event. Denials that concern
no child (a list or field the role may not read) and reads of the audit trail are one more event of the
request, with no A-number. Each child's event carries its scope office (`rules.roles.scope_office`), from the
ICE record the request read, else the one in the gateway's cache: a scoped auditor sees only events of
its offices. `AuditTrail`
writes the events once, after execution and before the HTTP response exists; when the write fails the
response carries no data (fail closed).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import ExecutionResult, GraphQLError
from graphql.pyutils import Path
from strawberry.extensions import SchemaExtension
from strawberry.types import Info
from strawberry.types.graphql import OperationType

from resolvers.anumber import canonical_a_number
from rules.roles import Principal, place_key, scope_office
from sources.systems import Source
from sources.tracing import AUDIT_SPAN, recorded
from sources.tracing import ERROR as SPAN_ERROR
from stores.audit_trail import ERROR, FORBIDDEN, NOT_FOUND, OK, PARTIAL, AuditEvent, new_request_id, utc_timestamp

log = logging.getLogger("ucgw.audit")

AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"
# root fields that name children by argument: field name → argument (python name)
CHILD_ROOTS = {"child": "a_number", "children": "a_numbers"}
CHILD_TYPE = "Child"
NO_CHILD = ""  # the A-number of a request's event that concerns no child (denied lists, audit reads)
AUDIT_READ_SECTION = "auditEvents"


@dataclass
class ChildRead:
    """Everything one request did with one child's record."""

    a_number: str
    found: bool | None = None
    forbidden: bool = False
    returned: set[str] = field(default_factory=set)
    denied: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)

    @property
    def outcome(self) -> str:
        """forbidden > not_found > error > partial > ok."""
        if self.forbidden:
            return FORBIDDEN
        if self.found is False:
            return NOT_FOUND
        if self.failed:
            return ERROR
        if self.denied:
            return PARTIAL
        return OK


class ReadRecorder:
    """Per-request collector of child reads."""

    def __init__(self, request_id: str | None = None) -> None:
        self.request_id = request_id or new_request_id()  # the HTTP request's id, or one of its own (an operation)
        self._reads: dict[str, ChildRead] = {}
        self._sections: dict[Path, tuple[str, str]] = {}  # section's response path → (A-number, section)
        self._ice: dict[str, Mapping[str, Any] | None] = {}  # A-number → the ICE record the request read
        # the events the audit trail wrote when execution ended (`AuditTrail`): the stored answer's templates
        # are these, not a second build of them (gateway/http/answer_memo.py re-stamps them per request)
        self.written: list[AuditEvent] | None = None

    def saw_ice(self, a_number: str, record: Mapping[str, Any] | None) -> None:
        """The request read ICE's record of `a_number` (None: ICE has none); it names the scope office."""
        self._ice[a_number] = record

    def settle_offices(self, cached: Callable[[str], tuple[bool, Mapping[str, Any] | None]]) -> None:
        """For children whose ICE record the request did not read, take the one `cached` holds, if any
        (`cached(a)` → (held, record)); no backend call is made for the audit trail."""
        for a_number in self._reads:
            if a_number != NO_CHILD and a_number not in self._ice:
                held, record = cached(a_number)
                if held:
                    self._ice[a_number] = record

    def office(self, a_number: str) -> str | None:
        """The scope office of a child read (`place_key` form), None when it is in no office's scope."""
        office = scope_office(self._ice.get(a_number))
        return place_key(office) if office is not None else None

    def audit_read(self) -> None:
        """The request read the audit trail."""
        self.child(NO_CHILD).returned.add(AUDIT_READ_SECTION)

    def child(self, a_number: str) -> ChildRead:
        """The read of `a_number`, created on first mention."""
        read = self._reads.get(a_number)
        if read is None:
            read = self._reads[a_number] = ChildRead(a_number)
        return read

    def found(self, a_number: str, found: bool) -> None:
        """Whether any system knows the child."""
        read = self.child(a_number)
        read.found = found if read.found is None else (read.found or found)

    def forbidden(self, a_number: str) -> None:
        """The caller may not read this child at all (role or field-office scope)."""
        self.child(a_number).forbidden = True

    def scope_unverified(self, a_number: str) -> None:
        """The child's field office could not be checked, so nothing was returned."""
        self.child(a_number).failed.add("fieldOfficeScope")

    def section_started(self, info: Info[Any, Any], a_number: str) -> None:
        """A Child section resolver began: remember its path so denials inside it find their child."""
        self.section_started_at(info.path, info.field_name, a_number)

    def section_started_at(self, path: Path, section: str, a_number: str) -> None:
        """`section_started` for a section computed without resolve info (resolvers/upstream/execution_context.py)."""
        self._sections[path] = (a_number, section)
        self.child(a_number)

    def section_done(self, section: str, a_number: str, ok: bool) -> None:
        """A Child section was returned (`ok`) or failed."""
        read = self.child(a_number)
        (read.returned if ok else read.failed).add(section)

    def denied(self, info: Info[Any, Any], source: Any, arguments: Mapping[str, Any]) -> None:
        """A permission check refused a field; attribute it to the child (or children) it concerns."""
        parent = info.path.typename
        if parent == CHILD_TYPE and getattr(source, "a_number", None):
            self.child(str(source.a_number)).denied.add(info.field_name)
            return
        if parent == "Query" and info.field_name in CHILD_ROOTS:
            for a_number in _named_children(arguments.get(CHILD_ROOTS[info.field_name])):
                self.forbidden(a_number)
            return
        above = info.path.prev  # the enclosing paths, innermost first (Paths compare by value)
        while above is not None:
            owner = self._sections.get(above)
            if owner is not None:
                a_number, section = owner
                self.child(a_number).denied.add(f"{section}.{info.field_name}")
                return
            above = above.prev
        # a list or field that concerns no child: the request's own event
        read = self.child(NO_CHILD)
        read.forbidden = True
        read.denied.add(info.field_name if parent == "Query" else f"{parent}.{info.field_name}")

    def reads(self) -> list[ChildRead]:
        """Every child read so far, in first-mention order."""
        return list(self._reads.values())

    def events(self, principal: Principal | None, purpose: str | None) -> list[AuditEvent]:
        """One audit event per child read."""
        now = utc_timestamp()
        p = principal or Principal(subject="unknown", role="none", client="unknown", method="none")
        return [
            AuditEvent(
                time=now, request_id=self.request_id, subject=p.subject, role=p.role, client=p.client,
                a_number=r.a_number, outcome=r.outcome, sections_returned=tuple(sorted(r.returned)),
                sections_denied=tuple(sorted(r.denied)), sections_failed=tuple(sorted(r.failed)), purpose=purpose,
                office=self.office(r.a_number),
            )
            for r in self._reads.values()
        ]


def _named_children(raw: Any) -> list[str]:
    """Canonical A-numbers among the arguments of a refused root field (malformed ones are not reads)."""
    values = raw if isinstance(raw, list) else [raw]
    out = []
    for value in values:
        try:
            out.append(canonical_a_number(str(value)))
        except GraphQLError:
            continue
    return out


class AuditTrail(SchemaExtension):
    """Writes the request's child reads to the audit store after execution, before the response is built."""

    async def on_execute(self) -> AsyncIterator[None]:
        yield
        ctx = self.execution_context.context
        recorder: ReadRecorder | None = getattr(ctx, "reads", None)
        if recorder is None or not recorder.reads():
            return
        if self.execution_context.operation_type is OperationType.SUBSCRIPTION:
            return  # its reads, a refusal at its start included, are written with each result (StreamAudit)
        settle_offices(ctx)
        events = recorder.events(getattr(ctx, "principal", None), getattr(ctx, "purpose", None))
        store = getattr(ctx, "audit_store", None)
        services = getattr(ctx, "services", None)
        tracer = recorded(getattr(services, "tracer", None))
        if tracer is None:
            if await self._commit(store, events):
                recorder.written = events
            return
        with tracer.start_as_current_span(AUDIT_SPAN, attributes={"ucgw.audit.events": len(events)}) as span:
            ok = await self._commit(store, events)
            if ok:
                recorder.written = events
            span.set_attribute("ucgw.outcome", "ok" if ok else "error")
            if not ok:
                span.set_status(SPAN_ERROR)

    async def _commit(self, store: Any, events: list[Any]) -> bool:
        """Write the events; on failure the result's data is withheld (False)."""
        try:
            if store is None:
                raise RuntimeError("no audit store configured")
            await store.append(events)
        except Exception as exc:  # noqa: BLE001 - any failure to record means no data leaves
            log.error("audit trail write failed (%s); withholding %d child record(s)", type(exc).__name__,
                      len(events))
            _withhold(self.execution_context.result)
            return False
        return True


def settle_offices(ctx: Any) -> None:
    """Before a request's events are built: the scope office of each child whose ICE record the request did
    not read, from the gateway's cache (whatever its age; no backend call)."""
    services, recorder = getattr(ctx, "services", None), getattr(ctx, "reads", None)
    if services is None or recorder is None:
        return
    fetcher = services.fetchers[Source.ICE]

    def cached(a_number: str) -> tuple[bool, Mapping[str, Any] | None]:
        entry = fetcher.cache.get(fetcher.key(a_number))
        return (False, None) if entry is None else (True, entry.record)

    recorder.settle_offices(cached)


def _withhold(result: Any) -> None:
    """Replace the result's data with an AUDIT_UNAVAILABLE error, in place."""
    if isinstance(result, ExecutionResult):
        result.data = None
        result.errors = [GraphQLError("the read could not be recorded in the audit trail; no data is returned",
                                      extensions={"code": AUDIT_UNAVAILABLE})]
