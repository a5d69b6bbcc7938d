"""`serve` keeps the running persona out of the cyclic collector's walks (gc.freeze), and
gives the old persona back to it after a scenario swap."""

from __future__ import annotations

import gc
import weakref

from strictmx.receiver import scenario as scenarios
from strictmx.receiver.server import Receiver, ServerOptions


def options(freeze_gc: bool) -> ServerOptions:
    return ServerOptions(port=0, db=":memory:", freeze_gc=freeze_gc)


async def test_serve_freezes_the_persona_and_releases_the_old_one_after_a_swap() -> None:
    receiver = Receiver(scenarios.load("default"), options(freeze_gc=True))
    try:
        await receiver.start()
        assert gc.get_freeze_count() > 0
        # Made part of a reference cycle, as much of a persona is: only the collector
        # can free it, and it never looks at frozen objects.
        world = receiver.world
        world.__dict__["_cycle"] = world
        old_world = weakref.ref(world)
        del world
        await receiver.switch_scenario(scenarios.load("postfix-strict"))
        assert old_world() is None, "the old persona's world was frozen with it"
        assert gc.get_freeze_count() > 0
    finally:
        await receiver.stop()
    assert gc.get_freeze_count() == 0


async def test_a_receiver_in_a_larger_program_leaves_the_collector_alone() -> None:
    receiver = Receiver(scenarios.load("default"), options(freeze_gc=False))
    try:
        await receiver.start()
        assert gc.get_freeze_count() == 0
    finally:
        await receiver.stop()
