"""Leaving the process group: gloo ranks leave one at a time through the store, rank 0 last."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from deepdive.engine import distributed as ddist


def test_ranks_leave_in_rank_order_and_rank_0_returns_after_the_last():
    store = dist.HashStore()
    world = 3
    log: list[tuple[str, int, float]] = []
    lock = threading.Lock()

    def note(what: str, rank: int) -> None:
        with lock:
            log.append((what, rank, time.perf_counter()))

    def rank_main(rank: int) -> None:
        def leave() -> None:
            note("leave", rank)
            time.sleep(0.05)  # a slow destroy: the next rank must not start before this one ends
            note("left", rank)

        time.sleep(0.03 * (world - rank))  # the last rank arrives first
        ddist.leave_in_turn(store, rank, world, leave)
        note("returned", rank)

    for _ in range(2):  # a second teardown on the same store is a round of its own
        log.clear()
        threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        events = [(what, rank) for what, rank, _ in sorted(log, key=lambda e: e[2])]
        leaves = [e for e in events if e[0] in ("leave", "left")]
        assert leaves == [("leave", 0), ("left", 0), ("leave", 1), ("left", 1), ("leave", 2), ("left", 2)]
        assert events.index(("returned", 0)) > events.index(("left", 2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gloo_rank(rank: int, world: int, port: int, rounds: int) -> None:
    store = dist.TCPStore("127.0.0.1", port, world, is_master=rank == 0, timeout=timedelta(seconds=60))
    for round_ in range(rounds):
        dist.init_process_group("gloo", store=dist.PrefixStore(f"round{round_}", store), rank=rank,
                                world_size=world, timeout=timedelta(seconds=60))
        dist.all_reduce(torch.ones(4))
        ddist.teardown()
        assert not dist.is_initialized()


def test_gloo_group_torn_down_and_rebuilt_repeatedly_on_three_processes():
    """Real gloo: three processes meet, reduce and leave five times; every process exits cleanly."""
    ctx = mp.start_processes(_gloo_rank, args=(3, _free_port(), 5), nprocs=3, join=False, start_method="spawn")
    while not ctx.join(timeout=120):
        pass
