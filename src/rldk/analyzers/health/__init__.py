"""Training health: onset-aware rules on each run's quantities, and the KL rules."""
from rldk.analyzers.health.analyzer import RULES, HealthAnalyzer, Rule, check_rule
from rldk.analyzers.health.params import NotApplicable, Params
from rldk.analyzers.health.result import HealthResult

__all__ = ["RULES", "HealthAnalyzer", "HealthResult", "NotApplicable", "Params", "Rule", "check_rule"]
