"""The built-in playbooks, and the registry the rules engine looks them up in.

Conventions every playbook here follows (see :mod:`playbooks.base` for the contract):

- ``check_allowed`` raises :class:`~receiver.errors.TargetNotAllowed` for anything outside
  ``ctx.targets``; ``plan`` and ``run`` call it again, so a guard skipped upstream still holds;
- ``plan`` only reads (Docker inspect, pg_stat_activity, SCAN, checksums), never changes;
- ``run`` raises :class:`~receiver.errors.PlaybookError` (``AdapterError`` when the system is
  unreachable) when it could not act at all, and returns ``RunResult(ok=False)`` when it acted
  but did not reach the wanted state; with ``ctx.dry_run`` it returns the plan and does nothing.

Importing this package builds :data:`REGISTRY` but opens no connection and imports none of
the client libraries; adapters are created per call through ``ctx.adapters``.

A registry is a plain ``{name: playbook}`` mapping: the worker runs jobs from the one it is
given, and ``receiver.config.parse_config(..., registry=...)`` checks that each rule names a
playbook in it (default: :func:`load_registry`). A playbook's policy is on its class:
``risk``, ``always_requires_approval`` and ``default_approvers``.
"""

from __future__ import annotations

from typing import Any

from playbooks.base import Playbook


def load_registry() -> dict[str, Playbook[Any]]:
    """One instance of each built-in playbook, by name."""
    from playbooks.flush_cache import FlushCache
    from playbooks.kill_query import KillQuery
    from playbooks.maintenance_mode import MaintenanceMode
    from playbooks.restart_container import RestartContainer
    from playbooks.restore_database import RestoreDatabase
    from playbooks.rollback_deployment import RollbackDeployment
    from playbooks.scale_service import ScaleService

    playbooks: list[Playbook[Any]] = [
        RestartContainer(),
        ScaleService(),
        KillQuery(),
        FlushCache(),
        RestoreDatabase(),
        MaintenanceMode(),
        RollbackDeployment(),
    ]
    return {playbook.name: playbook for playbook in playbooks}


REGISTRY: dict[str, Playbook[Any]] = load_registry()

__all__ = ["REGISTRY", "load_registry"]
