"""Ids are UUIDv7: valid, time-ordered by millisecond, unique, and never repeated across a fork."""

from __future__ import annotations

import os
import time
import uuid

from dragonfly.ids import new_id


def test_ids_are_uuid7_and_time_ordered() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(50_000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for text in ids[::997]:
        u = uuid.UUID(text)
        assert (u.version, u.variant) == (7, uuid.RFC_4122)
        assert str(u) == text
        assert before <= u.int >> 80 <= after
    stamps = [uuid.UUID(t).int >> 80 for t in ids]
    assert stamps == sorted(stamps)


def test_a_forked_child_never_repeats_the_parents_ids() -> None:
    new_id()  # the parent's random pool is filled now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.write(write, ",".join(new_id() for _ in range(50)).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = set(os.read(read, 1 << 16).decode().split(","))
    parent = {new_id() for _ in range(50)}
    # The random 74 bits must differ; the millisecond prefix may coincide.
    assert not {c[14:] for c in child} & {p[14:] for p in parent}


def test_threads_never_share_ids() -> None:
    import sys
    from concurrent.futures import ThreadPoolExecutor

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to interleave inside new_id
    try:
        with ThreadPoolExecutor(8) as pool:
            batches = list(pool.map(lambda _: [new_id() for _ in range(5_000)], range(8)))
    finally:
        sys.setswitchinterval(old)
    randoms = [i[14:] for b in batches for i in b]
    assert len(set(randoms)) == len(randoms)
