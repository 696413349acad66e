"""ferry's capacity planner: pure functions from a snapshot and a policy to a plan.

No I/O, no clock, no randomness: the same input gives the same plan, byte for byte. See
``planners/README.md`` for the pipeline (filters -> scorers -> choose -> improve -> sequence ->
cost -> plan) and the module of each stage.
"""

from planners.check import check_plan
from planners.evacuate import plan_drain, plan_evacuate
from planners.place import PlaceResult, place
from planners.rebalance import plan_rebalance

__all__ = ["PlaceResult", "check_plan", "place", "plan_drain", "plan_evacuate", "plan_rebalance"]
