"""Which Ray the Flower simulation runs on, and how it is started or joined.

- No address set (`resources.ray_address`, `--ray-address`, `RAY_ADDRESS`): a private
  Ray for this simulation alone (`address="local"`), even while another Ray cluster
  runs on the machine, so a stray cluster can neither break nor capture the run. It
  gets this machine's CPUs, no dashboard, 127.0.0.1 as its address, and passes task
  arguments up to `INLINE_ARGUMENT_BYTES` inline.
- An address set: join that cluster with the address alone; its head decides the
  resources and the system settings (start it with
  `ray start --head --system-config='{"max_direct_call_object_size": 786432}'` to keep
  the inline limit). The head's port is tried first: a dead address is an error
  after `CONNECT_TIMEOUT_S` seconds instead of Ray's minutes of retries.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.training import available_cpus, select_device
from decentral_bench.scenario import ResourcesConfig

# Ray passes a task's arguments up to this size inside the call and larger ones through
# its shared-memory object store. Its default, 100 KiB, sends a 5-agent digits message
# (5 × 19 KB of arrays, 103.6 KB in all) through the store. Measured on a 2-core machine,
# one actor call: 120 KB 2.9 ms through the store, 1.3 ms inline; the two meet near
# 800 KB; 2 MB 4.2 ms through the store, 7.9 ms inline.
INLINE_ARGUMENT_BYTES = 768 * 1024
CONNECT_TIMEOUT_S = 10.0
LOOPBACK = "127.0.0.1"


class ClusterUnreachable(RuntimeError):
    """Nothing answers at a Ray head's address."""


def scenario_ray_address(resources: ResourcesConfig) -> str | None:
    """The Ray cluster to join: `resources.ray_address` (which `--ray-address` sets),
    else `RAY_ADDRESS`; None for a private local Ray."""
    return resources.ray_address or os.environ.get("RAY_ADDRESS") or None


def ray_address(plan: MethodPlan) -> str | None:
    """The Ray cluster a method's simulation joins (`scenario_ray_address`)."""
    return scenario_ray_address(plan.scenario.resources)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail clearly when nothing answers at a Ray head's HOST:PORT (`auto` is left to
    Ray, which finds a cluster started on this machine or says there is none)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise ClusterUnreachable(
            f"no Ray cluster answers at {address} ({error}; waited {timeout:.0f} s): start "
            "its head (`ray start --head --port PORT`) or unset resources.ray_address, "
            "--ray-address and RAY_ADDRESS to run on a private local Ray") from None


def init_args(plan: MethodPlan, verbose: bool = False) -> dict[str, Any]:
    """`ray.init` arguments: join the cluster at `ray_address`, else a private local Ray."""
    quiet = {"logging_level": "error", "log_to_driver": verbose}
    address = ray_address(plan)
    if address is not None:
        return {"address": address, **quiet}
    return {"address": "local", "num_cpus": available_cpus(), "include_dashboard": False,
            "_node_ip_address": LOOPBACK,
            "_system_config": {"max_direct_call_object_size": INLINE_ARGUMENT_BYTES}, **quiet}


def backend_config(plan: MethodPlan, verbose: bool = False) -> dict:
    """Flower's Ray backend settings: `ray.init` arguments (`init_args`) and each agent
    actor's resources: `cpus_per_agent` CPUs (at most this machine's, on a private Ray)
    and, on a GPU, a share of it (`gpus_per_agent`, by default one GPU split over the
    actors that run at once)."""
    resources = plan.scenario.resources
    joined = ray_address(plan) is not None
    cpus = available_cpus()
    per_agent = resources.cpus_per_agent if joined else min(resources.cpus_per_agent, cpus)
    gpus = resources.gpus_per_agent or 0.0
    if not joined and select_device(resources.device).type == "cuda":
        parallel = max(1, min(plan.agents, cpus // per_agent))
        gpus = resources.gpus_per_agent or 1.0 / parallel
    return {"client_resources": {"num_cpus": per_agent, "num_gpus": gpus},
            "init_args": init_args(plan, verbose)}
