"""The search space: per-stage (or per-layer) width ratios, turned into specs that meet the budget.

A trial samples a *shape*: a relative width ratio for each (design-pattern) stage (``r0``, ``r1``, ...) or each layer
(``l0``, ``l1``, ...). `guided.shapes.design.design` then scales that shape by one global factor so the spec's
parameters (or MACs) meet the budget within 1%, the same way guided and uniform designs are built. So the
space never proposes an over-budget network, and a guided or uniform design is a point of it (uniform:
every ratio equal; guided: the pattern's keep ratios), which is how designs enter as warm starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from guided.errors import UserError
from guided.shapes.design import Budget, design, pattern_stage_count
from guided.shapes.patterns import Pattern
from models import ArchSpec, cost, pattern_stages

__all__ = ["WidthSpace", "RATIO_LOW", "RATIO_HIGH"]

RATIO_LOW, RATIO_HIGH = 0.05, 1.0


@dataclass(frozen=True)
class WidthSpace:
    """Width shapes of one target architecture at one budget.

    Attributes:
        target: the unpruned target (its widths are the base widths).
        budget: what every proposed spec costs (within 1%).
        per_layer: one ratio per prunable width entry instead of per stage.
    """

    target: ArchSpec
    budget: Budget
    per_layer: bool = False

    @property
    def names(self) -> list[str]:
        """Parameter names, in order."""
        if self.per_layer:
            return [f"l{i}" for i in range(len(self.target.widths()))]
        return [f"r{s}" for s in range(pattern_stage_count(self.target))]

    def suggest(self, trial) -> ArchSpec:
        """Sample a shape from an Optuna trial and return its spec (parameters recorded as user attrs)."""
        params = {n: trial.suggest_float(n, RATIO_LOW, RATIO_HIGH) for n in self.names}
        spec = self.spec(params)

        c = cost(spec)
        trial.set_user_attr("params", c.params)
        trial.set_user_attr("macs", c.macs)
        trial.set_user_attr("spec", spec.to_json(indent=None))
        return spec

    def spec(self, params: Mapping[str, float]) -> ArchSpec:
        """The spec of a shape given as ``{name: ratio}``."""
        missing = [n for n in self.names if n not in params]
        if missing:
            raise UserError(f"shape lacks {missing}")
        return design(self.target, self.budget, pattern=self._pattern(params), per_layer=self.per_layer)

    def _pattern(self, params: Mapping[str, float]) -> Pattern:
        n = pattern_stage_count(self.target)
        if self.per_layer:
            of = [p for row in pattern_stages(self.target) for p in row]
            rows = [{"stage": p, "keep_ratio_mean": params[f"l{j}"]} for j, p in enumerate(of)]
            stages = []
            for s in range(n):
                ratios = [r["keep_ratio_mean"] for r in rows if r["stage"] == s]
                stages.append({"stage": s, "keep_ratio_mean": sum(ratios) / len(ratios)})
            return Pattern("channels", tuple(stages), tuple(rows))
        stages = [{"stage": s, "keep_ratio_mean": params[f"r{s}"]} for s in range(n)]
        return Pattern("channels", tuple(stages))

    def params_of(self, spec: ArchSpec) -> dict[str, float]:
        """The shape of a designed spec (its widths relative to the target's), normalised to max 1.

        Used to enqueue guided and uniform designs as the first trials.
        """
        if spec.family != self.target.family or len(spec.stages) != len(self.target.stages):
            raise UserError(f"seed design {spec.name} does not have the stages of the search target {self.target.name}")
        if self.per_layer:
            if len(spec.widths()) != len(self.target.widths()):
                raise UserError(f"seed design {spec.name} has other layers than {self.target.name}")
            raw = [w / b for w, b in zip(spec.widths(), self.target.widths())]
        else:
            of = [p for row in pattern_stages(self.target) for p in row]
            pairs = list(zip(of, spec.widths(), self.target.widths()))
            raw = [
                sum(w for p, w, _ in pairs if p == s) / sum(b for p, _, b in pairs if p == s)
                for s in range(pattern_stage_count(self.target))
            ]
        top = max(raw)
        return {n: min(RATIO_HIGH, max(RATIO_LOW, r / top)) for n, r in zip(self.names, raw)}
