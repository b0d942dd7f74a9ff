"""`SelectorRunner`: the `controller.core.Selector` the simulator and the router call.

It binds a policy (stateless, picked by name) to a `SelectorState` (everything learned) for a
fixed list of query classes. Per class the arms are the catalog model variants whose estimated
accuracy (the catalog's top-1 figure at start) meets the class's floor; a class that fixes
`model` (a baseline) always gets that model. Labels can later drop an arm, once its accuracy is
confidently below the floor (posterior mean + z * sd < floor). A class with no arm left raises
`NoFeasibleModel`: the query gets a clear error, never a silent downgrade.

Pure: no clock, no global RNG; the caller passes the generator to `select`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from selector.feedback import accumulate, accumulate_one, scalar_reward, scalarised_reward
from selector.params import SelectorParams, parse_params
from selector.policies import POLICIES
from selector.state import ClassState, SelectorState

SELECTORS: tuple[str, ...] = tuple(POLICIES)


class NoFeasibleModel(Exception):
    """No model variant meets a query class's accuracy floor."""


class UnknownSelector(ValueError):
    """No selection algorithm by that name."""


def _no_model_message(cls, best: str, best_acc: float, why: str) -> str:
    return (f"query class {cls.name!r} needs top-1 accuracy >= {cls.min_accuracy:.3f} within "
            f"{cls.slo_ms:g} ms, but no model variant {why} (best: {best} at {best_acc:.3f})")


class SelectorRunner:
    """Per-class bandits over model variants; implements `controller.core.Selector`."""

    def __init__(self, algorithm: str, classes: Sequence, catalog, params: SelectorParams):
        if algorithm not in POLICIES:
            raise UnknownSelector(f"unknown selector {algorithm!r}; known: {', '.join(SELECTORS)}")
        self.algorithm = algorithm
        self.policy = POLICIES[algorithm]()
        self.params = params
        self.classes = tuple(classes)
        self._catalog_names = [m.name for m in catalog.models]
        self._discount = params.discount_per_obs
        self._fixed: list[int | None] = []
        class_states = []
        num_models = len(catalog.models)
        self._pos_of_model: list[np.ndarray] = []  # catalog index -> arm position (-1: not an arm)
        for cls in self.classes:
            if cls.model is not None:
                arms = [catalog.model(cls.model)]
                self._fixed.append(arms[0].index)
            else:
                allowed = getattr(cls, "variants", None)
                arms = [m for m in catalog.models if m.top1_accuracy >= cls.min_accuracy - 1e-12
                        and (allowed is None or m.name in allowed)]
                self._fixed.append(None)
                if not arms:
                    best = max(catalog.models, key=lambda m: m.top1_accuracy)
                    raise NoFeasibleModel(_no_model_message(cls, best.name, best.top1_accuracy,
                                                            "in the catalog reaches it"))
            cs = ClassState(cls.name, [m.index for m in arms], [m.top1_accuracy for m in arms])
            class_states.append(cs)
            lookup = np.full(num_models, -1, dtype=np.int64)
            lookup[cs.arm_models] = np.arange(cs.num_arms)
            self._pos_of_model.append(lookup)
        self._state = SelectorState(algorithm, class_states)
        # Plain-Python copies for the n == 1 paths (list indexing beats numpy indexing there).
        self._arm_lists = [cs.arm_models.tolist() for cs in class_states]
        self._pos_lists = [lookup.tolist() for lookup in self._pos_of_model]
        self._one_pos = [np.array([k]) for k in range(num_models)]
        self._feasible: list[np.ndarray | None] = [None] * len(self.classes)
        for ci in range(len(self.classes)):
            self._refresh_feasible(ci)

    # --- accuracy feasibility ------------------------------------------------------------------
    def _refresh_feasible(self, ci: int) -> None:
        """Recompute which arms may still meet the floor (only labels move it)."""
        if self._fixed[ci] is not None:
            self._feasible[ci] = None
            return
        cs = self._state.classes[ci]
        mean, sd = cs.accuracy_posterior(self.params.accuracy_prior_count)
        ok = mean + self.params.accuracy_z * sd >= self.classes[ci].min_accuracy - 1e-12
        # Arms are prior-feasible, so without labels all pass; None keeps the hot path unmasked.
        self._feasible[ci] = None if ok.all() else ok

    def estimated_accuracy(self, class_idx: int) -> np.ndarray:
        """Posterior mean accuracy per arm of a class (catalog prior moved by labels)."""
        return self._state.classes[class_idx].accuracy_posterior(self.params.accuracy_prior_count)[0]

    def set_cost_prior(self, class_idx: int, cost_usd_by_model) -> None:
        """Expected $ per request of each catalog model (indexed by catalog order) for this
        class before its cost is observed, e.g. what procurement plans to serve it on."""
        cs = self._state.classes[class_idx]
        cs.prior_cost_usd = np.asarray(cost_usd_by_model, dtype=float)[cs.arm_models]

    def set_slo_prior(self, class_idx: int, p_met_by_model) -> None:
        """Expected P(SLO met) of each catalog model for this class before any outcome is seen
        (constrained selector), e.g. high where VMs will serve it, low where nothing can."""
        cs = self._state.classes[class_idx]
        cs.prior_slo_met = np.asarray(p_met_by_model, dtype=float)[cs.arm_models]

    def arms(self, class_idx: int) -> list[str]:
        return [self._catalog_names[i] for i in self._state.classes[class_idx].arm_models]

    # --- the Selector protocol ---------------------------------------------------------------
    def select(self, class_idx: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """Catalog model indices for `n` requests of class `class_idx`."""
        fixed = self._fixed[class_idx]
        if fixed is not None:
            return np.full(n, fixed, dtype=np.int64)
        feasible = self._feasible[class_idx]
        cs = self._state.classes[class_idx]
        if feasible is not None and not feasible.any():
            mean = self.estimated_accuracy(class_idx)
            best = int(np.argmax(mean))
            raise NoFeasibleModel(_no_model_message(
                self.classes[class_idx], self._catalog_names[cs.arm_models[best]], float(mean[best]),
                "still reaches it after accuracy feedback"))
        if n == 1:  # the router's hot path: scalar code, no [K, n] matrices
            return np.array([self._arm_lists[class_idx][self.policy.choose_one(cs, feasible, rng, self.params)]])
        if n <= 0:
            return np.zeros(0, dtype=np.int64)
        return cs.arm_models[self.policy.choose(cs, feasible, n, rng, self.params)]

    def observe(self, class_idx: int, model_idx: np.ndarray, latency_ms: np.ndarray,
                slo_met: np.ndarray, correct: np.ndarray, cost_usd: np.ndarray) -> None:
        """Learn from a batch of outcomes (correct: 1.0 / 0.0, NaN when no label came back).

        Outcomes of models that are not arms of the class (e.g. a request that named its model)
        are ignored.
        """
        if self._fixed[class_idx] is not None:
            return
        cs = self._state.classes[class_idx]
        if len(model_idx) == 1:
            self._observe_one(class_idx, cs, model_idx, latency_ms, slo_met, correct, cost_usd)
            return
        pos = self._pos_of_model[class_idx][np.asarray(model_idx, dtype=np.int64)]
        latency_ms, slo_met, correct, cost_usd = (np.asarray(x) for x in (latency_ms, slo_met, correct, cost_usd))
        keep = pos >= 0
        if not keep.all():
            pos, latency_ms, slo_met, correct, cost_usd = (
                x[keep] for x in (pos, latency_ms, slo_met, correct, cost_usd))
        if len(pos) == 0:
            return
        correct = correct.astype(float, copy=False)
        reward = scalarised_reward(slo_met, correct, cost_usd, self.params)
        # The policy's own update first: Exp3's importance weights use the distribution that
        # drew these picks, before the shared statistics move.
        self.policy.update(cs, pos, reward, self._feasible[class_idx], self.params)
        accumulate(cs, pos, latency_ms, slo_met, correct, cost_usd, reward, self._discount)
        if not np.isnan(correct).all():
            self._refresh_feasible(class_idx)

    def _observe_one(self, class_idx, cs, model_idx, latency_ms, slo_met, correct, cost_usd) -> None:
        """observe() for one request in plain floats (same arithmetic, a few us cheaper)."""
        k = self._pos_lists[class_idx][int(model_idx[0])]
        if k < 0:
            return
        met, c, cost = float(slo_met[0]), float(correct[0]), float(cost_usd[0])
        reward = scalar_reward(met, c, cost, self.params)
        pos = self._one_pos[k]
        self.policy.update(cs, pos, (reward,), self._feasible[class_idx], self.params)
        accumulate_one(cs, k, float(latency_ms[0]), met, c, cost, reward, self._discount)
        if c == c:  # a label came back (not NaN): only arm k's accuracy estimate moved
            self._refresh_feasible_arm(class_idx, cs, k)

    def _refresh_feasible_arm(self, ci: int, cs: ClassState, k: int) -> None:
        """_refresh_feasible when only arm k got labels, in floats; the mask is rebuilt only
        when arm k's verdict flips (rare), so a labelled request stays cheap."""
        k0 = self.params.accuracy_prior_count
        labelled, correct = cs.labels[0, k], cs.labels[1, k]
        a = float(cs.prior_accuracy[k]) * k0 + correct
        b = (1.0 - float(cs.prior_accuracy[k])) * k0 + labelled - correct
        s = a + b
        ok = a / s + self.params.accuracy_z * (a * b / (s * s * (s + 1.0))) ** 0.5 >= \
            self.classes[ci].min_accuracy - 1e-12
        feasible = self._feasible[ci]
        if ok != (True if feasible is None else bool(feasible[k])):
            self._refresh_feasible(ci)

    # --- state -------------------------------------------------------------------------------
    @property
    def state(self) -> SelectorState:
        """The live learned state (copy it before mutating; `to_dict()` / `to_json()` to ship)."""
        return self._state

    def load_state(self, state: SelectorState | dict | str) -> None:
        """Replace the learned state (a SelectorState, its dict or its JSON), e.g. after `merge`."""
        if isinstance(state, str):
            state = SelectorState.from_json(state)
        elif isinstance(state, dict):
            state = SelectorState.from_dict(state)
        if state.algorithm != self.algorithm or len(state.classes) != len(self._state.classes) or not all(
                a.same_arms(b) for a, b in zip(state.classes, self._state.classes)):
            raise ValueError(f"selector state does not fit this {self.algorithm} selector "
                             f"(algorithm, classes or arms differ)")
        self._state = state.copy()
        for ci in range(len(self.classes)):
            self._refresh_feasible(ci)

    def summary(self) -> dict:
        """Per class, per arm estimates (for logs and the CLI)."""
        return {cls.name: {"arms": self.arms(ci), **self._state.classes[ci].summary(self.params.accuracy_prior_count)}
                for ci, cls in enumerate(self.classes)}


def make_selector(name: str, classes: Sequence, catalog, params: dict | None = None) -> SelectorRunner:
    """The selector `name` (one of SELECTORS) for `classes` (controller.core.QueryClass).

    Raises NoFeasibleModel when a class's floor is above every model, UnknownSelector for a bad
    name and selector.params.SelectorParamsError for bad params.
    """
    return SelectorRunner(name, classes, catalog, parse_params(params))
