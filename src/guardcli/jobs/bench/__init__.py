"""`guard bench`: the runner (runner.py), one measured run per process (worker.py), the report."""
