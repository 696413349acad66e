"""An independent, deliberately simple checker of plans, written from contracts/*.md alone.

It shares no code with planners/ (only the fleet vocabulary), so a bug in the planner's filters
cannot hide itself from the property tests: both this oracle and ``check_plan`` must agree that a
plan keeps every hard rule after every move, in execution order.
"""

from __future__ import annotations

from fleet import Inventory, Plan, Policy, effective_rules


def oracle_violations(inv: Inventory, plan: Plan, policy: Policy) -> list[str]:
    rules = effective_rules(inv)
    nodes = {n.name: n for n in inv.nodes}
    cts = {c.id: c for c in inv.containers}
    where = {c.id: c.node for c in inv.containers}
    disk_on = {c.id: c.storage for c in inv.containers}
    used = {(n.name, s): st.used_gb for n in inv.nodes for s, st in n.storage.items()}
    bad: list[str] = []

    def load(node: str, attr: str) -> float:
        return sum(getattr(cts[c], attr) for c, n in where.items() if n == node)

    for i, m in enumerate(plan.moves):
        c = cts.get(m.ct)
        dst = nodes.get(m.to)
        if c is None or dst is None or where[m.ct] != m.from_node:
            bad.append(f"{i}: bad reference")
            continue
        if m.ct in rules.pinned or m.ct in rules.ignore:
            bad.append(f"{i}: moved a pinned/ignored container")
        if not dst.online or dst.maintenance or m.to in rules.exclude_nodes:
            bad.append(f"{i}: destination may not receive")
        if nodes[m.from_node].platform != dst.platform:
            bad.append(f"{i}: platform change")
        if m.ct in rules.pin_to and m.to not in rules.pin_to[m.ct]:
            bad.append(f"{i}: outside pin_to")
        src_storage = disk_on[m.ct]
        target = m.target_storage or src_storage
        where[m.ct] = m.to
        if src_storage is not None:
            src_st = nodes[m.from_node].storage[src_storage]
            dst_st = dst.storage.get(target)
            if dst_st is None:
                bad.append(f"{i}: no storage {target} on {m.to}")
                continue
            if not (src_st.shared and dst_st.shared and src_storage == target):
                used[(m.from_node, src_storage)] -= c.disk_gb
                used[(m.to, target)] += c.disk_gb
                if used[(m.to, target)] > dst_st.total_gb * (1 - policy.disk_headroom) + 1e-6:
                    bad.append(f"{i}: disk over on {m.to}:{target}")
            disk_on[m.ct] = target
        mem_cap = dst.memory_mb * policy.memory_overcommit * (1 - policy.memory_headroom)
        if load(m.to, "memory_mb") > mem_cap + 1e-6:
            bad.append(f"{i}: memory over on {m.to}")
        if load(m.to, "cpus") > dst.cpus * policy.cpu_overcommit + 1e-6:
            bad.append(f"{i}: cpu over on {m.to}")
        for group in rules.anti_affinity:
            if m.ct in group and sum(1 for g in group if where[g] == m.to) > 1:
                bad.append(f"{i}: anti-affinity broken on {m.to}")
    moved = {m.ct for m in plan.moves}
    for group in rules.affinity:
        if group & moved and len({where[g] for g in group}) > 1:
            bad.append(f"affinity group {sorted(group)} split")
    return bad
