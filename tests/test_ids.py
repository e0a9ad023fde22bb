"""billing_project.ids: opaque, time-ordered, unique ids, also across threads and a fork."""

import os
import re
import signal
import threading
import time

from billing_project import ids

ID = re.compile(r"^le_[0-9a-hjkmnp-tv-z]{26}$")


def test_format_and_time_order():
    first = ids.new_id("le")
    time.sleep(0.002)
    second = ids.new_id("le")
    assert ID.match(first) and ID.match(second)
    assert first < second  # the millisecond timestamp leads


def test_unique_across_pool_refills_in_threads():
    made: list[list[str]] = [[] for _ in range(4)]

    def work(out):
        out.extend(ids.new_id("le") for _ in range(5000))  # ~12 refills of the pool each

    threads = [threading.Thread(target=work, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for out in made for i in out]
    assert len(set(everything)) == len(everything) == 20000


def test_a_forked_child_does_not_reuse_the_parents_random_bytes():
    ids.new_id("le")  # the pool holds unused bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: its ids' random parts, then exit at once
        try:
            os.write(write, ",".join(ids.new_id("le")[-16:] for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split(","))
    os.waitpid(pid, 0)
    parent = {ids.new_id("le")[-16:] for _ in range(50)}
    assert len(child) == 50 and not child & parent


def test_a_child_forked_while_the_pool_is_locked_still_makes_ids():
    """Another thread may be refilling the pool (holding its lock) when a thread forks."""
    read, write = os.pipe()
    with ids._pool_lock:
        pid = os.fork()
        if pid == 0:
            try:
                signal.alarm(5)  # a deadlocked child ends here, not in a hung test run
                os.write(write, ids.new_id("le").encode())
            finally:
                os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        made = pipe.read()
    os.waitpid(pid, 0)
    assert ID.match(made)
