"""Scripts run in subprocesses by these tests; not test modules themselves."""

collect_ignore = ["scenario.py", "two_process_run.py"]
