"""Team secrets: set, deleted and read by name (owner: secrets).

CONTRACT (foundation; the secrets helper fills it in):

- ``secret_set(*, team, actor, name, value, description="") -> TeamSecret``: made or
  replaced (admins and owners), the value sealed (apps.core.crypto); audited without the
  value. ``secret_delete(*, team, actor, name)``.
- ``secrets_resolve(team, names, *, used_by) -> dict[str, str]``: the values of the team's
  secrets named (a missing one is a ServiceError naming it: a workload never starts with
  a secret silently absent); audited as a use by ``used_by`` ("job run 12", "notebook x").
- ``secret_names(team) -> list[str]``; ``check_names(team, names)``: refuse names the team
  does not have (a job of team A cannot name team B's secret: names are looked up in A).
- ``mask_values(team_id) -> list[str]`` and ``mask(lines, values) -> list[str]``: what log
  lines of the team's workloads are masked with (apps.machines.reports.workload_logs).
"""
