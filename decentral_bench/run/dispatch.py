"""Where a scenario's children run: one after another in the sweep's own process (one
at a time, no Ray address), side by side in processes of this machine (`--jobs N`,
`resources.parallel_runs`), or as Ray tasks on a cluster (vectorized children, with a
Ray address; Flower children's drivers stay on this machine)."""

from __future__ import annotations

from typing import Literal

from decentral_bench.engines.flower.ray_cluster import check_reachable, scenario_ray_address
from decentral_bench.experiment.sweep import RunSpec
from decentral_bench.run.local_pool import LocalPool
from decentral_bench.run.parallel import Pool
from decentral_bench.run.ray_dispatch import RayPool
from decentral_bench.run.share import auto_jobs
from decentral_bench.scenario import Scenario

Jobs = int | Literal["auto"]


class Dispatch:
    """`jobs` children at once, in the `local` pool or on the `cluster`."""

    def __init__(self, jobs: int, local: LocalPool | None, cluster: RayPool | None) -> None:
        self.jobs, self.local, self.cluster = jobs, local, cluster

    @property
    def parallel(self) -> bool:
        """Whether children run in processes of their own (else in the sweep's)."""
        return self.local is not None or self.cluster is not None

    def pool_for(self, spec: RunSpec) -> Pool:
        if self.cluster is not None and spec.scenario.resources.engine == "vectorized":
            return self.cluster
        assert self.local is not None, "a parallel dispatch has a local pool"
        return self.local

    def close(self) -> None:
        """Stop what is left of the pools and leave the cluster."""
        if self.local is not None:
            self.local.close()
        if self.cluster is not None:
            self.cluster.close()


def open_dispatch(scenario: Scenario, specs: list[RunSpec], requested: Jobs, uri: str,
                  source: str, verbose: bool = False) -> Dispatch:
    """How to run `specs`: `requested` at once (`auto`: what fits, see `share.auto_jobs`
    and `RayPool.auto_jobs`). With a Ray address, the cluster must answer (within
    seconds) and, for tasks, reach the store at `uri`."""
    address = scenario_ray_address(scenario.resources)
    if address is not None:
        check_reachable(address)
    tasks = [spec for spec in specs if spec.scenario.resources.engine == "vectorized"]
    cluster = RayPool(address, uri, tasks, source, verbose) if address and tasks else None
    try:
        if requested == "auto":
            jobs = cluster.auto_jobs(tasks) if cluster is not None else auto_jobs(specs)
        else:
            jobs = requested
        if cluster is not None:
            cluster.set_jobs(jobs)
    except BaseException:
        if cluster is not None:
            cluster.close()
        raise
    local = LocalPool(jobs) if jobs > 1 or cluster is not None else None
    return Dispatch(jobs, local, cluster)
