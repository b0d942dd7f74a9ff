"""Bandit model selection per query class (pure: no clock, injected RNG, serializable state).

Public API:
    make_selector(name, classes, catalog, params=None) -> SelectorRunner   (controller.core.Selector)
    SELECTORS                                          names: epsilon-greedy, ucb1, thompson, exp3, constrained
    NoFeasibleModel                                    no model meets a class's accuracy floor
    SelectorState, merge(states, base=None)            learned state, its (de)serialization, replica merge
See docs/selector.md.
"""
from selector.params import SelectorParams, SelectorParamsError
from selector.runner import SELECTORS, NoFeasibleModel, SelectorRunner, UnknownSelector, make_selector
from selector.state import ClassState, SelectorState, merge

__all__ = ["make_selector", "SELECTORS", "NoFeasibleModel", "UnknownSelector", "SelectorRunner",
           "SelectorParams", "SelectorParamsError", "SelectorState", "ClassState", "merge"]
