"""jobs: what a command runs (classify, pipeline, ray, sweep, bench, serve, convert). Each takes a
guard and records and never names a family."""
