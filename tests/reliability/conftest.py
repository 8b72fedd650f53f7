"""Scripts run in subprocesses by these tests; not test modules themselves."""

collect_ignore = ["distributed_run.py", "killed_run.py"]
