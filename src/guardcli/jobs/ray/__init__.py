"""Scale-out classify with Ray Data: the same guard and the same verdicts, across a cluster.

The pipeline is read -> classify (one guard per actor, `map_batches`) -> write shards, followed by
an independent count of the input, so that records in == records out is checked, not assumed.
JSONL is read as raw bytes and split into lines here (not with `read_json`), so every line goes
through `records.parse_line` and bad lines become the same error records as in local classify.
"""

from __future__ import annotations

from guardcli.core.spec import GuardSpec
from guardcli.jobs.ray.job import ScaleResult, classify_with_ray, guard_error_in
from guardcli.jobs.ray.plan import connect, expand_inputs, input_format, worker_plan
from guardcli.jobs.ray.stages import count_lines, split_lines

__all__ = [
    "GuardSpec",
    "ScaleResult",
    "classify_with_ray",
    "connect",
    "count_lines",
    "expand_inputs",
    "guard_error_in",
    "input_format",
    "split_lines",
    "worker_plan",
]
