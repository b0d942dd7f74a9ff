"""The real Router class built and closed without Ray, for unit tests, and an in-memory VM handle.

`build_router` does what a Serve replica does at start (serve.ingress makes `__init__` a
coroutine); `close_router` calls our `Router.__del__` (what Serve calls at shutdown) without
serve.ingress's async wrapper around it, which waits for an ASGI lifespan that only runs inside
Serve."""
import asyncio
import inspect

import numpy as np

from serving.router_app import Router


def build_router(apps: list[dict], accuracy: dict, settings: dict, handles: dict) -> Router:
    cls = Router.func_or_class
    router = cls.__new__(cls)
    init = cls.__init__(router, apps, accuracy, settings, handles)
    if asyncio.iscoroutine(init):
        asyncio.run(init)
    return router


def close_router(router: Router) -> None:
    own = next(c.__dict__["__del__"] for c in type(router).__mro__
               if "__del__" in c.__dict__ and not inspect.iscoroutinefunction(c.__dict__["__del__"]))
    own(router)


class FakeVmHandle:
    """A VM target's DeploymentHandle: `infer.remote(batch)` -> awaitable (probs, batch ms, cold),
    uniform probabilities over `classes`."""

    def __init__(self, classes: int = 1000):
        self.classes, self.calls = classes, 0
        self.batch_sizes: list[int] = []
        self.infer = self

    def remote(self, batch, batch_size=None):
        self.calls += 1
        if batch_size is not None:
            self.batch_sizes.append(batch_size)

        async def run():
            return np.full((len(batch), self.classes), 1.0 / self.classes, np.float32), 1.0, False
        return run()
