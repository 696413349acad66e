"""Exact placement with OR-Tools CP-SAT: the optimum the heuristics are measured against.

Model (https://developers.google.com/optimization/cp/cp_solver): a Boolean ``x[u, n]`` per unit
and allowed node (rule filters without anti-affinity, which is a constraint here); each unit on
exactly one node; per node, fixed load + placed units within the memory and CPU capacity (a node
already over capacity may keep what it has); at most one member of an anti-affinity group per
node; disk per node, storages pooled (see :func:`_disk`); optionally at most ``max_moved``
containers away from home. Objective, either:

- ``peak``: minimise ``P`` with ``10^4 * load_n <= P * ram_n`` (utilisation in 1/10^4 steps);
- ``squares``: minimise ``sum_n c_n * load_n^2`` with ``c_n ~ mean_ram / ram_n`` (the planner's
  objective, :mod:`planners.objective`; on equal nodes simply the sum of squared utilisations).

Loads are counted in units of :data:`GRAIN_MB` (VPS sizes are multiples of it) to keep products
small. The storage choice is left to the filters (callers check solutions with them). With ``workers=1``
and a deterministic time limit the result is reproducible, as plans must be.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from ortools.sat.python import cp_model

from fleet.errors import InputError
from planners.filters import Ctx, node_receives, not_emptying, not_excluded, pin_to, platform
from planners.objective import expected_copy
from planners.state import FleetState
from planners.units import Unit

GRAIN_MB = 256
#: Largest model (units x nodes Booleans) solver="cp-sat" accepts; beyond it the default planner
#: is the tool (see BENCHMARKS.md, planner scale).
MAX_PAIRS = 200_000
_DOMAIN_FILTERS = (node_receives, not_excluded, not_emptying, pin_to, platform)


@dataclass(frozen=True)
class Solution:
    node_of: dict[str, str]  # unit key -> node
    optimal: bool
    objective: float


def allowed_nodes(ctx: Ctx, unit: Unit, home: str | None) -> list[str]:
    """Nodes a unit may end on: those passing the rule filters, plus ``home`` (it may stay)."""
    out = [n for n in ctx.state.nodes if all(f(ctx, unit, n) is None for f in _DOMAIN_FILTERS)]
    if home is not None and home not in out:
        out.append(home)
    return out


def check_size(units: int, nodes: int) -> None:
    """Refuse, with a one-line reason, a model too large to build and solve in reasonable time."""
    if units * nodes > MAX_PAIRS:
        raise InputError("solver", "cp-sat", f"{units} units x {nodes} nodes is beyond the exact "
                         f"model's {MAX_PAIRS:,} pairs; use the default solver")


def _grains(mb: float) -> int:
    return int(round(mb / GRAIN_MB))


def solve(ctx: Ctx, units: list[Unit], objective: Literal["peak", "squares"], *,
          may_stay: bool = True, max_moved: int | None = None, hint: dict[str, str] | None = None,
          time_limit_s: float = 10.0, workers: int = 1, deterministic: bool = True) -> Solution | None:
    """Place ``units`` (now at their home nodes in ``ctx.state``) optimally, or None if infeasible.

    ``may_stay=False`` (evacuation) forbids the home node unless the rule filters allow it;
    ``hint`` (unit key -> node) starts the search from a known solution, e.g. the greedy one.
    """
    st = ctx.state
    model = cp_model.CpModel()
    home = {u.key: _home(st, u) if may_stay else None for u in units}
    moving = {ct for u in units for ct in u.members}
    x: dict[tuple[str, str], cp_model.IntVar] = {}
    for u in units:
        nodes = allowed_nodes(ctx, u, home[u.key])
        for n in nodes:
            x[(u.key, n)] = model.new_bool_var(f"x_{u.key}_{n}")
        model.add_exactly_one(x[(u.key, n)] for n in nodes)
    loads = _capacity(model, st, units, x, moving)
    _anti_affinity(model, st, units, x, moving)
    _disk(model, st, units, x)
    if max_moved is not None:
        model.add(sum(len(u.members) * (1 - x[(u.key, home[u.key])]) for u in units
                      if home[u.key] is not None and (u.key, home[u.key]) in x) <= max_moved)
    for key, node in (hint or {}).items():
        if (key, node) in x:
            model.add_hint(x[(key, node)], 1)
    _objective(model, st, loads, objective)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = 0
    if deterministic:
        solver.parameters.max_deterministic_time = time_limit_s
    else:
        solver.parameters.max_time_in_seconds = time_limit_s
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    node_of = {key: n for (key, n), v in x.items() if solver.boolean_value(v)}
    return Solution(node_of, status == cp_model.OPTIMAL, solver.objective_value)


def _capacity(model: cp_model.CpModel, st: FleetState, units: list[Unit],
              x: dict[tuple[str, str], cp_model.IntVar], moving: Collection[str]) -> dict:
    """Memory and CPU limits per node; returns node -> (load variable in grains, its upper bound)."""
    fixed_mem, fixed_cpu = _fixed(st, moving)
    loads = {}
    for n in st.nodes:
        on = [(u, x[(u.key, n)]) for u in units if (u.key, n) in x]
        mem = _grains(fixed_mem[n]) + sum(_grains(u.memory_mb) * v for u, v in on)
        cpu = int(round(fixed_cpu[n] * 100)) + sum(int(round(u.cpus * 100)) * v for u, v in on)
        model.add(mem <= max(int(st.mem_cap(n) // GRAIN_MB), _grains(st.mem[n])))
        model.add(cpu <= max(int(st.cpu_cap(n) * 100), int(round(st.cpu[n] * 100))))
        top = max(_grains(fixed_mem[n]) + sum(_grains(u.memory_mb) for u, _ in on), 0)
        load = model.new_int_var(0, top, f"load_{n}")
        model.add(load == mem)
        loads[n] = (load, top)
    return loads


def _home(st: FleetState, unit: Unit) -> str | None:
    nodes = {st.where[ct].node for ct in unit.members}
    return nodes.pop() if len(nodes) == 1 else None


def _fixed(st: FleetState, moving: Collection[str]) -> tuple[dict[str, float], dict[str, float]]:
    mem, cpu = dict(st.mem), dict(st.cpu)
    for ct in moving:
        node = st.where[ct].node
        mem[node] -= st.containers[ct].memory_mb
        cpu[node] -= st.containers[ct].cpus
    return mem, cpu


def _anti_affinity(model: cp_model.CpModel, st: FleetState, units: list[Unit],
                   x: dict[tuple[str, str], cp_model.IntVar], moving: Collection[str]) -> None:
    unit_of = {ct: u for u in units for ct in u.members}
    for group in st.rules.anti_affinity:
        for n in st.nodes:
            fixed = sum(1 for ct in group if ct not in moving and ct in st.where and st.where[ct].node == n)
            terms = [x[(unit_of[ct].key, n)] for ct in sorted(group)
                     if ct in unit_of and (unit_of[ct].key, n) in x]
            if terms:
                model.add(sum(terms) <= max(1 - fixed, 0))


def _disk(model: cp_model.CpModel, st: FleetState, units: list[Unit],
          x: dict[tuple[str, str], cp_model.IntVar]) -> None:
    """End-state disk per node, its storages pooled (exact for one storage per node; the filters
    still choose the storage): disks copied in must fit what is free once local disks copied out
    have left. A disk on a shared storage the destination mounts under the same id moves nothing
    (:func:`planners.objective.expected_copy`); one leaving a shared storage is not counted free."""
    for n in st.nodes:
        free = int(math.floor(sum(st.disk_free(n, s) for s in st.nodes[n].storage) + 1e-6))
        arrive, leave, most = [], [], 0
        for u in units:
            var = x.get((u.key, n))
            for ct in u.members:
                here, gb = st.where[ct], st.containers[ct].disk_gb
                if here.storage is None or gb <= 0:
                    continue
                if here.node != n and var is not None and expected_copy(st, ct, n):
                    arrive.append(math.ceil(gb) * var)
                    most += math.ceil(gb)
                elif here.node == n and not st.nodes[n].storage[here.storage].shared:
                    leave.append(int(gb) * (1 - var) if var is not None else int(gb))
        if most > free:
            model.add(sum(arrive) - sum(leave) <= max(free, 0))


def _objective(model: cp_model.CpModel, st: FleetState, loads: dict, objective: str) -> None:
    if objective == "peak":
        peak = model.new_int_var(0, 10**6, "peak")
        for n, (load, _) in loads.items():
            model.add(10**4 * GRAIN_MB * load <= peak * st.nodes[n].memory_mb)
        model.minimize(peak)
        return
    squares = []
    for n, (load, ub) in loads.items():
        sq = model.new_int_var(0, ub * ub, f"sq_{n}")
        model.add_multiplication_equality(sq, [load, load])
        weight = max(1, int(round(100 * st.mean_memory / st.nodes[n].memory_mb)))
        squares.append(weight * sq)
    model.minimize(sum(squares))
