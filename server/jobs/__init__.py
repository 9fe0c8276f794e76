"""Jobs: every long task (deep check, training, tuning, compression) runs as a subprocess.

``manager`` starts and watches them (own process group, output and events streamed, limits,
cancel = kill the group); ``supervise`` is each job's first process, which stops the job's whole tree
when the process that owns its manager dies; ``processes`` names processes by pid and start time and
kills trees; ``store`` keeps their records in SQLite; ``kinds`` is the registry of what can be
started; ``events`` is what a job's own code calls to report progress and results.
"""
