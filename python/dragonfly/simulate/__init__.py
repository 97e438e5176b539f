"""The operator's market simulator (issue 20): a scripted market run through the gateway's own routing
code — the native `Market` ranking and the `AttemptPlan` through `gateway.routing.plan_route`, listing
health (`domain.health.LiveHealth`, re-probes), the in-process state store's admission, billing
(`gateway.trade.usage_from`), the usage audit and market pricing — in virtual time, deterministic for a
seed.

    dragonfly simulate python/dragonfly/simulate/scenarios/seller_outage.toml --json out.json

One concern per module: `scenario` (the TOML schema), `distributions`, `behaviours` (the seller
library), `traffic`, `events` (virtual time), `market` (snapshot, router, state store), `trade` (one
request's attempts), `health`, `pricing`, `metrics`, `report`, `engine` (the loop), `plots` (PNG, lazy
matplotlib), `sweep` (weight search, Pareto front), `apply` (PUT the chosen weights), `cli`.
"""

from __future__ import annotations

from pathlib import Path

from dragonfly.simulate.engine import Engine
from dragonfly.simulate.report import Report, render_table
from dragonfly.simulate.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

__all__ = [
    "SCENARIOS",
    "Engine",
    "Report",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "parse_scenario",
    "render_table",
    "run",
]

SCENARIOS = Path(__file__).parent / "scenarios"
"""The shipped scenarios (`<name>.toml`)."""


def run(scenario: Scenario) -> Report:
    """Run a scenario to its end; the report."""
    return Engine(scenario).run()
