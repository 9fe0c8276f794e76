"""A process that owns a JobManager, as the daemon or ``deepdive train`` does (a helper the tests run).

Usage: ``python _owner.py STATE_DIR WORKSPACE KIND OPTIONS_JSON``. Starts one job, prints it as a JSON
line, then prints the job again, as its manager recorded it, when it ends, and exits. The tests kill
this process with SIGKILL, or cancel its job from another manager, and watch what becomes of the job.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from deepdive.jobs.manager import JobManager
from deepdive.jobs.store import JobStore
from deepdive.protocol import JobStartParams, to_wire


async def main(state_dir: str, workspace: str, kind: str, options: str) -> None:
    manager = JobManager(JobStore(Path(state_dir)), workspace=workspace)
    job = await manager.start(JobStartParams(kind=kind, options=json.loads(options)))
    print(json.dumps(to_wire(job)), flush=True)
    print(json.dumps(to_wire(await manager.wait(job.id))), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
