"""Live telemetry of the daemon: the hub (a websockets server on loopback that takes samples from
training jobs on ``/ingest`` and fans them out to dashboards on ``/stream``), the machine samplers
(NVML, host, job process trees) and the SQLite store of runs and their downsampled metrics. Nothing
here imports torch; everything runs inside the daemon's asyncio loop or in its worker threads.
"""
