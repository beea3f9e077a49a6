"""`kitchen-table run --workers N`: N bot processes on one machine, sharing its port.

Each worker is an ordinary `kitchen-table run` that binds the port with SO_REUSEPORT,
so the kernel spreads connections (webhooks) among them; they share nothing but the
PostgreSQL database, which decides everything that must happen once. This process
only starts them, passes on a request to stop, and starts again one that died.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

log = logging.getLogger("kitchen_table")

# Set in a worker's environment: bind the port shared (SO_REUSEPORT).
WORKER_ENV = "KITCHEN_TABLE_WORKER"
# A worker that dies is started again after this long, doubling to RESTART_LONGEST.
RESTART_FIRST = 1.0
RESTART_LONGEST = 30.0


def is_worker() -> bool:
    return bool(os.environ.get(WORKER_ENV))


async def supervise(count: int, argv: Sequence[str]) -> int:
    """Run `count` workers until told to stop (SIGINT or SIGTERM); 0 once all have ended."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    running = [asyncio.create_task(_keep_running(n + 1, argv, stop)) for n in range(count)]
    log.info("started %d workers sharing the port", count)
    results = await asyncio.gather(*running)
    return max(results)


async def _keep_running(number: int, argv: Sequence[str], stop: asyncio.Event) -> int:
    delay = RESTART_FIRST
    while True:
        env = {**os.environ, WORKER_ENV: str(number)}
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *argv, env=env)
        ended = asyncio.create_task(process.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({ended, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            code = await ended
            return 0 if code in (0, -signal.SIGTERM) else code
        stopping.cancel()
        code = ended.result()
        if code == 2:  # a setting the worker can't use: starting it again won't help
            stop.set()
            return code
        log.warning("worker %d ended (exit %s); starting it again in %g s", number, code, delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return 0
        except TimeoutError:
            delay = min(delay * 2, RESTART_LONGEST)
