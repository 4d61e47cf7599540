"""Decision ids: random, unique across block refills and threads, fresh in a forked child."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

from engine.decision.service import _RandomBlocks, new_nonce


def test_nonces_are_32_hex_characters_and_do_not_repeat_across_refills() -> None:
    ids = [new_nonce() for _ in range(3 * _RandomBlocks.BLOCK // 16 + 7)]  # three refills and a bit
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_threads_never_get_the_same_bytes() -> None:
    blocks = _RandomBlocks()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: blocks.take(16), range(5_000)))
    assert len(set(ids)) == len(ids)


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    new_nonce()  # the parent has a block in hand
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave without running the parent's cleanup
        os.write(write, new_nonce().encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert status == 0
    assert child != new_nonce()
    assert re.fullmatch(r"[0-9a-f]{32}", child)
