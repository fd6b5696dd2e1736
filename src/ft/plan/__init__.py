"""`ft plan`: memory, time and cost of a config on each hardware flavor, before anything is spent.

`ft submit` calls `estimate_for_flavor` and reads `FLAVORS`; nothing here imports torch.
"""

from ft.plan.estimate import FlavorEstimate, PlanReport, estimate_for_flavor, plan_run
from ft.plan.hardware import FLAVORS, Flavor

__all__ = ["FLAVORS", "Flavor", "FlavorEstimate", "PlanReport", "estimate_for_flavor", "plan_run"]
