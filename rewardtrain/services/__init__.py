"""Writes for training: runs (request, execute, schedule, sweep) and versions (publish, archive).

Only `runs.training_run_execute` loads torch, inside the function: the web process imports
these modules too.
"""
