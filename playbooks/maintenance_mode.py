"""maintenance_mode: put a server of an HAProxy backend into maintenance (or drain), or back
into rotation, through HAProxy's runtime API on its admin socket.

``set server <backend>/<server> state maint|drain|ready``, then ``show servers state
<backend>`` reads the state back: the result is ok only when HAProxy reports the state
asked for. Maintenance stops all traffic to the server at once; drain lets its current
sessions finish and sends it no new ones. A frontend can route to a maintenance page when a
backend has no server left (``use_backend maintenance if { nbsrv(app) eq 0 }``).

Allowlist: ``targets.haproxy.<target>.backends.<backend>.servers``, names checked exactly
(see :mod:`receiver.remediation.haproxy_targets`); the backend's ``min_ready`` refuses a
change that would leave fewer servers in rotation. Idempotent (setting a state twice is one
change). Taking a server out of rotation is high risk by default; putting one back
(``state: ready``) is low. Undo puts the server back in the state it had before the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from playbooks.base import (
    Plan,
    Playbook,
    PlaybookContext,
    Risk,
    RunResult,
    StrictParams,
    Verification,
    dry_run_result,
)
from receiver.errors import PlaybookError, TargetNotAllowed
from receiver.remediation.haproxy_targets import HaproxyName, HaproxyTarget, haproxy_target
from receiver.remediation.targets import TargetName

if TYPE_CHECKING:
    from receiver.adapters import HaproxyApi
    from receiver.adapters.haproxy import HaproxyServer

State = Literal["maint", "drain", "ready"]


class MaintenanceModeParams(StrictParams):
    target: TargetName
    backend: HaproxyName
    server: HaproxyName
    state: State = "maint"


class MaintenanceMode(Playbook[MaintenanceModeParams]):
    name = "maintenance_mode"
    Params = MaintenanceModeParams
    idempotent = True
    risk = Risk.HIGH
    undoable = True

    def risk_for(self, params: MaintenanceModeParams, ctx: PlaybookContext) -> Risk:
        return Risk.LOW if params.state == "ready" else Risk.HIGH

    def risk_note(self, params: MaintenanceModeParams, ctx: PlaybookContext) -> str | None:
        if params.state == "ready":
            return "putting a server back into rotation is low risk"
        return None

    def targets(self, params: MaintenanceModeParams) -> list[str]:
        return [f"haproxy:{params.target}/{params.backend}/{params.server}"]

    def _target(self, params: MaintenanceModeParams, ctx: PlaybookContext) -> HaproxyTarget:
        target = haproxy_target(ctx.targets, params.target)
        target.check_server(params.backend, params.server, params.target)
        return target

    def check_allowed(self, params: MaintenanceModeParams, ctx: PlaybookContext) -> None:
        self._target(params, ctx)

    def _what(self, params: MaintenanceModeParams) -> str:
        return f"server {params.backend}/{params.server} on haproxy {params.target!r}"

    def _read(
        self, params: MaintenanceModeParams, api: HaproxyApi
    ) -> tuple[HaproxyServer, list[HaproxyServer]]:
        servers = api.servers(params.backend)
        found = next((s for s in servers if s.name == params.server), None)
        if found is None:
            raise PlaybookError(f"{self._what(params)} not found")
        return found, servers

    def _check_min_ready(
        self,
        params: MaintenanceModeParams,
        target: HaproxyTarget,
        state: State,
        servers: list[HaproxyServer],
    ) -> int:
        """How many servers of the backend stay serving (in rotation and up by their health
        check) after setting ``state``; refused when that is under the backend's
        ``min_ready``."""
        ready = {s.name for s in servers if s.serving}
        if state == "ready":
            ready.add(params.server)
        else:
            ready.discard(params.server)
        minimum = target.backends[params.backend].min_ready
        if len(ready) < minimum:
            raise TargetNotAllowed(
                f"setting {self._what(params)} to {state} would leave {len(ready)} server(s) "
                f"of backend {params.backend!r} serving, under "
                f"targets.haproxy.{params.target}.backends.{params.backend}.min_ready "
                f"({minimum})"
            )
        return len(ready)

    def _check_expected(
        self, params: MaintenanceModeParams, current: str, expect: str | None
    ) -> None:
        if expect is not None and current != expect:
            raise PlaybookError(
                f"{self._what(params)} is {current}, not {expect} as the run left it; "
                "it changed since, so it is not put back"
            )

    def _plan_state(
        self,
        params: MaintenanceModeParams,
        ctx: PlaybookContext,
        state: State,
        why: str,
        expect: str | None = None,
    ) -> Plan:
        target = self._target(params, ctx)
        current, servers = self._read(params, ctx.adapters.haproxy(target))
        self._check_expected(params, current.admin, expect)
        ready_after = self._check_min_ready(params, target, state, servers)
        if current.admin == state:
            steps = [f"{self._what(params)} is already {state}; nothing to change"]
        else:
            steps = [
                f"{self._what(params)} is {current.admin}; "
                f"set server {params.backend}/{params.server} state {state}",
                f"read the state back with 'show servers state {params.backend}'",
            ]
        steps.append(f"{ready_after} of {len(servers)} server(s) of the backend stay serving")
        return Plan(
            summary=f"{why}: {self._what(params)} from {current.admin} to {state}",
            steps=steps,
            targets=self.targets(params),
            detail={"current": current.admin, "desired": state, "ready_after": ready_after},
        )

    def plan(self, params: MaintenanceModeParams, ctx: PlaybookContext) -> Plan:
        ctx.ensure_allowed(self, params)
        return self._plan_state(params, ctx, params.state, "set state")

    def _apply(
        self,
        params: MaintenanceModeParams,
        ctx: PlaybookContext,
        state: State,
        expect: str | None = None,
    ) -> RunResult:
        target = self._target(params, ctx)
        api = ctx.adapters.haproxy(target)
        before, servers = self._read(params, api)
        self._check_expected(params, before.admin, expect)
        self._check_min_ready(params, target, state, servers)
        changed = before.admin != state
        if changed:
            ctx.log.info("haproxy server state", target=self._what(params),
                         before=before.admin, state=state)
            api.set_state(params.backend, params.server, state)
        after = api.server(params.backend, params.server)
        now = after.admin if after else None
        detail: dict[str, Any] = {
            "target": params.target,
            "backend": params.backend,
            "server": params.server,
            "state": state,
            "before": before.admin,
            "after": now,
            "changed": changed,
            "operational": after.operational if after else None,
        }
        ok = now == state
        summary = f"{self._what(params)}: {before.admin} -> {state}, now {now}"
        return RunResult(ok=ok, summary=summary, detail=detail)

    def run(self, params: MaintenanceModeParams, ctx: PlaybookContext) -> RunResult:
        if ctx.dry_run:
            return dry_run_result(self.plan(params, ctx))
        ctx.ensure_allowed(self, params)
        return self._apply(params, ctx, params.state)

    def verify(
        self, params: MaintenanceModeParams, ctx: PlaybookContext, result: RunResult
    ) -> Verification:
        wanted = result.detail.get("state", params.state)
        target = self._target(params, ctx)
        current, servers = self._read(params, ctx.adapters.haproxy(target))
        ready = sum(1 for s in servers if s.ready)
        return Verification(
            ok=current.admin == wanted,
            summary=f"{self._what(params)} is {current.admin} ({wanted} wanted); "
            f"{ready} of {len(servers)} server(s) ready",
            detail={"state": current.admin, "wanted": wanted, "ready": ready},
        )

    @staticmethod
    def _recorded(result: RunResult) -> tuple[State, str] | None:
        """The state to go back to and the state the run left, or None (nothing changed)."""
        before, after = result.detail.get("before"), result.detail.get("after")
        if not result.detail.get("changed"):
            return None
        if before not in ("maint", "drain", "ready") or not isinstance(after, str):
            raise PlaybookError("the run's result does not record the server's state before it")
        return before, after

    def undo_plan(
        self, params: MaintenanceModeParams, ctx: PlaybookContext, result: RunResult
    ) -> Plan:
        recorded = self._recorded(result)
        if recorded is None:
            return Plan(summary=f"nothing to undo: {self._what(params)} was not changed",
                        steps=[], targets=self.targets(params))
        return self._plan_state(params, ctx, recorded[0], "undo", expect=recorded[1])

    def undo(
        self, params: MaintenanceModeParams, ctx: PlaybookContext, result: RunResult
    ) -> RunResult:
        recorded = self._recorded(result)
        if recorded is None:
            return RunResult(ok=True, summary=f"nothing to undo: {self._what(params)} was "
                             "not changed", detail={"changed": False})
        if ctx.dry_run:
            return dry_run_result(self.undo_plan(params, ctx, result))
        before, after = recorded
        return self._apply(params, ctx, before, expect=after)
