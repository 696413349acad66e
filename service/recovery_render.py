"""The recovery plan for people: what comes back from which backup, how old its data is.

At 3 a.m. the question after "where does it go" is "what do we lose": every restore shows its
data age (the RPO: the writes since the archive was taken), the plan ends with the oldest one, and
every container that cannot come back is listed in red, never left out.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from fleet.model import Inventory
from fleet.plan import Plan
from planners.backups import describe_age
from service.render import GIB, plain


def render_recovery_plan(console: Console, plan: Plan, inv: Inventory) -> None:
    node = plan.recovery.node if plan.recovery else " ".join(plan.goal.nodes)
    names = {c.id: c.name or "" for c in inv.containers}
    table = Table(title=plain(f"Recovery of {node} (offline) from backups — {len(plan.moves)} restores"),
                  title_justify="left")
    for col in ("#", "container", "to", "data age", "GiB", "restore", "from"):
        table.add_column(col, no_wrap=col != "from", justify="right" if col in ("#", "GiB", "restore") else "left")
    for i, move in enumerate(plan.moves, 1):
        facts = move.restore
        label = f"{move.ct} {names.get(move.ct, '')}".strip()
        source = "Proxmox HA (followed)" if facts and facts.ha else facts.archive if facts else move.method
        age = describe_age(facts.data_age_s) if facts else "none (live move)"
        table.add_row(str(i), plain(label), plain(move.to), age, f"{move.predicted.bytes / GIB:.1f}",
                      f"{move.predicted.duration_s:.0f}s", plain(source))
    console.print(table)
    for item in plan.unplaced:
        console.print(plain(f"not restored {item.ct}: {item.reason}", style="bold red"))
    oldest = plan.recovery.oldest_data_age_s if plan.recovery else 0.0
    console.print(plain(f"oldest data: {describe_age(oldest)} (writes newer than each backup are lost); "
                        f"predicted makespan {plan.score.predicted_makespan_s:.0f} s"))
