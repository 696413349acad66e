"""Exact placement with OR-Tools CP-SAT: the optimum the heuristics are measured against.

Model (https://developers.google.com/optimization/cp/cp_solver): a Boolean ``x[u, n]`` per unit
and allowed node (rule filters without anti-affinity, which is a constraint here); each unit on
exactly one node; per node, fixed load + placed units within the memory and CPU capacity (a node
already over capacity may keep what it has); at most one member of an anti-affinity group per
node; disk per node, storages pooled (see :func:`planners.rules.disk_exact`); optionally at most ``max_moved``
containers away from home. Objective, either:

- ``peak``: minimise ``P`` with ``10^4 * load_n <= P * ram_n`` (utilisation in 1/10^4 steps);
- ``squares``: minimise ``sum_n c_n * load_n^2`` with ``c_n ~ mean_ram / ram_n`` (the planner's
  objective, :mod:`planners.objective`; on equal nodes simply the sum of squared utilisations).

The constraints are the rules' exact form (``constrain`` in :mod:`planners.rules`); the rules
without one restrict which nodes a unit is offered. Loads are counted in units of
:data:`planners.exact_model.GRAIN_MB` (VPS sizes are multiples of it) to keep products small. The storage choice is left to the filters (callers check solutions with
them). With ``workers=1`` and a deterministic time limit the result is reproducible, as plans must be.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from fleet.errors import InputError
from planners.exact_model import GRAIN_MB, ExactModel
from planners.rulebook import Ctx
from planners.rules import RULES
from planners.state import FleetState
from planners.units import Unit

if TYPE_CHECKING:  # imported in solve(): OR-Tools (and the pandas it brings) costs every CLI start ~1 s
    from ortools.sat.python import cp_model

#: Largest model (units x nodes Booleans) solver="cp-sat" accepts; beyond it the default planner
#: is the tool (see BENCHMARKS.md, planner scale).
MAX_PAIRS = 200_000


@dataclass(frozen=True)
class Solution:
    node_of: dict[str, str]  # unit key -> node
    optimal: bool
    objective: float


def allowed_nodes(ctx: Ctx, unit: Unit, home: str | None) -> list[str]:
    """Nodes a unit may end on: those passing the filters of the rules the model does not state as
    constraints, plus ``home`` (it may stay)."""
    out = [n for n in ctx.state.nodes if all(f(ctx, unit, n) is None for f in RULES.domain_filters)]
    if home is not None and home not in out:
        out.append(home)
    return out


def check_size(units: int, nodes: int) -> None:
    """Refuse, with a one-line reason, a model too large to build and solve in reasonable time."""
    if units * nodes > MAX_PAIRS:
        raise InputError("solver", "cp-sat", f"{units} units x {nodes} nodes is beyond the exact "
                         f"model's {MAX_PAIRS:,} pairs; use the default solver")


def solve(ctx: Ctx, units: list[Unit], objective: Literal["peak", "squares"], *,
          may_stay: bool = True, max_moved: int | None = None, hint: dict[str, str] | None = None,
          time_limit_s: float = 10.0, workers: int = 1, deterministic: bool = True) -> Solution | None:
    """Place ``units`` (now at their home nodes in ``ctx.state``) optimally, or None if infeasible.

    ``may_stay=False`` (evacuation) forbids the home node unless the rule filters allow it;
    ``hint`` (unit key -> node) starts the search from a known solution, e.g. the greedy one.
    """
    from ortools.sat.python import cp_model

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
    exact = ExactModel(model, st, units, x, moving)
    RULES.constrain(exact)
    if max_moved is not None:
        model.add(sum(len(u.members) * (1 - x[(u.key, home[u.key])]) for u in units
                      if home[u.key] is not None and (u.key, home[u.key]) in x) <= max_moved)
    for key, node in (hint or {}).items():
        if (key, node) in x:
            model.add_hint(x[(key, node)], 1)
    _objective(model, st, exact.loads, objective)
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


def _home(st: FleetState, unit: Unit) -> str | None:
    nodes = {st.where[ct].node for ct in unit.members}
    return nodes.pop() if len(nodes) == 1 else None


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
