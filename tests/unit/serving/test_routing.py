"""The plan as the router's routing table (serving.routing): targets' shares follow their planned
capacity, a request spills exactly when the route's budget says (the simulator's fluid queue,
worked by hand here and checked against the simulator's own VmPool), and the real Router class
(no Ray) carries both out."""
import asyncio
import time

import numpy as np
import pytest

from controller.core import Route
from router_harness import FakeVmHandle, build_router, close_router
from serving.routing import HEAD, VariantRoute, routing_table

VARIANT = "digits-small"


def test_weighted_round_robin_follows_the_weights_within_one_request():
    route = VariantRoute({HEAD: 4.5, "vm-a": 13.5})  # 1 : 3
    picks = [route.pick() for _ in range(400)]
    assert picks.count("vm-a") == 300 and picks.count(HEAD) == 100
    for n in range(1, 40):  # every prefix within one request of its share
        assert abs(picks[:n].count("vm-a") - 0.75 * n) <= 1.0
    assert {route.pick(exclude="vm-a") for _ in range(5)} == {HEAD}
    assert VariantRoute({HEAD: 0.0}).pick() is None


def test_admission_is_the_simulators_fluid_queue_against_the_budget():
    # mu 13.7 req/s, budget 200 ms: admitted while the backlog found is <= 0.2 x 13.7 = 2.74.
    route = VariantRoute({HEAD: 13.7}, max_vm_wait_ms=200.0, spill=True)
    assert [route.admit(10.0) for _ in range(5)] == [True, True, True, False, False]  # 0, 1, 2 | 3, 3
    assert route.backlog == 3.0  # spilled requests do not join the queue
    assert route.expected_wait_ms(10.0) == pytest.approx(3000 / 13.7)
    # 0.1 s later 1.37 requests have drained: backlog 1.63 fits, then 2.63 fits, then 3.63 does not.
    assert [route.admit(10.1) for _ in range(3)] == [True, True, False]
    assert route.backlog == pytest.approx(3.63)
    assert route.admit(20.0) and route.backlog == 1.0  # drained empty, then this one
    # The simulator's own pool on the same arrivals admits the same requests.
    from controller.sim.vm_pool import VmPool
    pool = VmPool("m", None)
    pool.mu_per_s, pool.slots = 13.7, 1.0
    admitted, _ = pool._serve_capped(np.array([0.0] * 5 + [0.1] * 3), 0.0, 13.7, 0.2 * 13.7)
    assert admitted.tolist() == [True, True, True, False, False, True, True, False]
    # Spill off: the budget is the client timeout (30 s here: a backlog up to 411).
    off = VariantRoute({HEAD: 13.7}, max_vm_wait_ms=200.0, spill=False, client_timeout_ms=30_000.0)
    assert sum(off.admit(0.0) for _ in range(420)) == 412
    # No budget (None): the client timeout as well; no capacity: nobody.
    assert VariantRoute({HEAD: 13.7}, max_vm_wait_ms=None).budget_ms() == 30_000.0
    assert not VariantRoute({}).admit(0.0)


def test_capacities_are_what_the_simulators_vm_pool_drains(tmp_path):
    from controller.config import load_config
    from controller.sim.vm_pool import VmPool
    from controller.live.live_catalog import build_live_catalog

    cfg = load_config("configs/default.yaml")
    catalog = build_live_catalog(cfg.catalog.dir, str(tmp_path), [VARIANT], {VARIANT: 0.9},
                                 ["local.small", "local.medium"], 1.0, measure=lambda v: ({1: 2.0, 8: 8.0}, 5.0))
    table = routing_table([Route(VARIANT, 8, 40.0, True)],
                          {VARIANT: {HEAD: ("local.small", 0.25), "vm-1": ("local.medium", 1.0)}}, catalog, 30.0)
    pool = VmPool(VARIANT, catalog)
    pool.set_fleet({"local.small": 0.25, "local.medium": 1.0}, 8)
    r = table[VARIANT]
    assert r.mu_per_s == pytest.approx(pool.mu_per_s)
    # local.medium: 2 batches of 8 in 8 ms = 2000 req/s; the head's quarter of local.small: 250.
    assert r.targets == pytest.approx({HEAD: 250.0, "vm-1": 2000.0})
    assert (r.batch_size, r.max_vm_wait_ms, r.spill, r.client_timeout_ms) == (8, 40.0, True, 30_000.0)


def _router(functions: bool = True):
    settings = {"functions": {"enabled": functions}, "control": {"prewarm_functions": False}, "head_in_process": False}
    return build_router([{"name": "digits", "slo_ms": 10_000, "min_accuracy": 0.5, "variants": [VARIANT]}],
                        {VARIANT: 0.9}, settings, {VARIANT: FakeVmHandle(classes=10)})


def test_a_procured_vm_gets_its_planned_share_of_a_variants_requests():
    router = _router(functions=False)
    vm = FakeVmHandle(classes=10)
    router.targets[VARIANT]["vm-x"] = (vm, 1)  # what _set_vm_targets adds, with an in-memory handle
    head = router.targets[VARIANT][HEAD][0]
    # The plan: the head's share of a local.small is 5 req/s, the VM 15: the VM takes 3 of 4.
    router.apply_control({"routing": {VARIANT: {"targets": {HEAD: 5.0, "vm-x": 15.0}, "batch_size": 4,
                                                "max_vm_wait_ms": None, "spill": True}}})

    async def go():
        x = np.zeros((1, 1, 8, 8), np.float32)
        return [await router._run(VARIANT, x, 10_000.0, time.perf_counter()) for _ in range(80)]
    out = asyncio.run(go())
    assert vm.calls == 60 and head.calls == 20
    assert [o[3] for o in out[:4]].count("vm-x") == 3
    assert vm.batch_sizes == [4] * 60  # the planned batch size rides with each request
    close_router(router)


class _Functions:
    """The function provider in memory (a warm instance always idle); `on_invoke` is called per call."""

    def __init__(self, on_invoke):
        self.on_invoke, self.deployed = on_invoke, {}

    def deploy(self, model, memory_mb, warm_pool=0, batch_size=1):
        self.deployed[model] = memory_mb

    def invoke(self, model, payload, timeout_s):
        from procurement.providers.base import InvokeResult
        self.on_invoke()
        return InvokeResult(True, np.full((payload.shape[0], 10), 0.1), 5.0, 5.0, False)

    def has_idle(self, model):
        return True

    def cold_start_ms(self, model):
        return None

    def stats(self):
        return {m: {"instances": 1} for m in self.deployed}

    def reap(self):
        return 0

    def close(self):
        pass


class _HeldVm(FakeVmHandle):
    """A VM target that holds its requests until released (they stay in flight)."""

    def __init__(self):
        super().__init__(classes=10)
        self.gate = None

    def remote(self, batch, batch_size=None):
        self.calls += 1

        async def run():
            await self.gate.wait()
            return np.full((len(batch), 10), 0.1, np.float32), 1.0, False
        return run()


def test_a_request_spills_exactly_when_the_plans_budget_says():
    router = _router()
    held = _HeldVm()
    router.targets[VARIANT][HEAD] = (held, 1)
    spilled = []
    router._stop.set()  # no reaper for the real local provider we replace
    router.functions = _Functions(lambda: spilled.append(router.core.inflight_vm[VARIANT]))
    router._init_function_batcher()  # over the in-memory provider
    # mu 1 req/s, budget 2500 ms: five requests ~10 ms apart find backlogs 0, ~1, ~2 (admitted), ~3
    # and ~3 (spilled: over 2.5; a spilled request does not join the queue).
    router.apply_control({"routing": {VARIANT: {"targets": {HEAD: 1.0}, "batch_size": 1, "max_vm_wait_ms": 2500.0,
                                                "spill": True}}})

    async def go():
        held.gate = asyncio.Event()
        x = np.zeros((1, 1, 8, 8), np.float32)
        t0 = time.perf_counter()
        tasks = []
        for _ in range(5):
            tasks.append(asyncio.ensure_future(router._run(VARIANT, x, 10_000.0, t0)))
            await asyncio.sleep(0.01)  # each finds the ones before it in flight
        held.gate.set()
        return await asyncio.gather(*tasks)
    out = asyncio.run(go())
    assert [o[1] for o in out] == ["vm", "vm", "vm", "function", "function"]
    assert spilled == [3, 3]  # the three admitted were still in flight when the others spilled
    # Spill off: the same arrivals stay on the VM (the budget is the client timeout).
    router.apply_control({"routing": {VARIANT: {"targets": {HEAD: 1.0}, "batch_size": 1, "max_vm_wait_ms": 2500.0,
                                                "spill": False}}})
    out = asyncio.run(go())
    assert [o[1] for o in out] == ["vm"] * 5
    close_router(router)


def test_a_stricter_request_slo_shrinks_the_budget_by_the_difference():
    # Planned for 200 ms with 150 ms of wait (50 ms service); mu 10 req/s: q / 10 s of wait.
    route = VariantRoute({HEAD: 10.0}, max_vm_wait_ms=150.0, spill=True, slo_ms=200.0)
    assert route.budget_ms() == route.budget_ms(200.0) == route.budget_ms(500.0) == 150.0
    assert route.budget_ms(120.0) == 70.0  # 80 ms stricter
    assert route.admit(0.0, 120.0) and not route.admit(0.0, 120.0)  # backlog 0: 0 ms fits 70; 1: 100 ms does not
    assert route.admit(0.0, 200.0)  # the planned SLO: 100 ms fits 150
    assert not VariantRoute({HEAD: 10.0}, 1, 150.0, True, slo_ms=200.0).admit(0.0, 0.001)  # below service: none


def test_the_policys_selector_learns_in_the_router_even_when_handed_over_read_only(tmp_path):
    """Ray deserializes the selector the control loop pushes zero-copy: its arrays are read-only.
    The router keeps a writable copy, selects with it and feeds it each outcome."""
    import pickle

    from controller.core import QueryClass
    from selector import make_selector
    from serving.router import App, RouterCore
    from serving.settings import ServingConfig

    class _Cat:
        def __init__(self, names, acc):
            from controller.catalog import ModelVariant
            self.models = [ModelVariant(n, i, a, 0, 0.0) for i, (n, a) in enumerate(zip(names, acc))]

        def model(self, name):
            return next(m for m in self.models if m.name == name)

    names = ["digits-large", "digits-small", "squeezenet"]
    cls = QueryClass("digits", 200.0, 0.5, 1.0, variants=("digits-large", "digits-small"))
    sel = make_selector("constrained", [cls], _Cat(names, [0.98, 0.9, 0.55]))
    assert sel.arms(0) == ["digits-large", "digits-small"]  # the app's variants only
    handed = pickle.loads(pickle.dumps(sel))
    for cs in handed.state.classes:
        for v in vars(cs).values():
            if isinstance(v, np.ndarray):
                v.setflags(write=False)
    core = RouterCore([App("digits", 200.0, 0.5, ("digits-small", "digits-large"))],
                      {"digits-small": 0.9, "digits-large": 0.98}, ServingConfig(feedback_window_s=1.0))
    core.install_selector(handed, ["digits"], names)
    picks = {core.choose(core.apps["digits"], None) for _ in range(50)}
    assert picks <= {"digits-small", "digits-large"}
    for i in range(20):
        core.finish(f"r{i}", core.apps["digits"], "digits-small", 3, 10.0, 200.0, now_s=0.0, cost_usd=1e-6)
    assert core.flush(now_s=5.0) == 20 and not core._pending  # past the feedback window: observed
    before, after = np.asarray(sel.state.classes[0].stats), np.asarray(core.selector_state()["classes"][0]["stats"])
    small = sel.arms(0).index("digits-small")
    assert after[:, small].sum() > before[:, small].sum()  # the outcomes reached the policy's selector's arm
    assert np.array_equal(after[:, 1 - small], before[:, 1 - small])


def test_an_operators_spill_fraction_wins_over_the_planned_route():
    from serving.router import App, RouterCore
    from serving.settings import ServingConfig

    core = RouterCore([App("digits", 200.0, 0.5, ("digits-small",))], {"digits-small": 0.9}, ServingConfig())
    core.apply_routing({"digits-small": VariantRoute({HEAD: 13.7}, max_vm_wait_ms=150.0, spill=True).to_dict()})
    core.vm_finished("digits-small", 12.0)  # a VM batch took 12 ms: the expected VM latency is 12 ms
    assert core.decide_backend("digits-small", 200.0, 0.0) == "vm"  # the plan's rule: no backlog, admitted
    core.settings = core.settings.model_copy(update={"spill_fraction": 0.01})  # 2 ms of a 200 ms SLO
    assert core.decide_backend("digits-small", 200.0, 0.0) == "vm"  # not pinned: the route still rules
    core.spill_pinned = True  # POST /admin/config {"serving": {"spill_fraction": 0.01}}
    assert core.decide_backend("digits-small", 200.0, 0.0) == "function"
