"""The vectorized engine: every agent of a method as one batched PyTorch program.

All N agents' parameters live in one tensor per model parameter (agents along
the first dimension). A gossip round is the same `strategies.gossip.gossip_round`
the ClientApp runs, applied to the stack block by block of agents (`blocks.py`):
the mixing sum is the block's rows of Π_k applied to the stack of messages
(`Mixer`), the gradients one `torch.func` call for the block or one pass per agent
(`StackedModel`, `batching.py`); see `gossip.py`. A server method runs every sampled
agent's local epochs at once, then the server update of Flower's stock strategy; see
`server.py`. Asynchronous gossip (AD-PSGD) applies its clock's events a tick at a time;
see `asynchronous.py`. What a run holds in memory: `memory.py`.

Same x_0, minibatch streams, step sizes, Π_k and failures as the Flower engine,
so both end with the same parameters (tested to 1e-5). It simulates the
algorithm on one machine; the Flower engine is the reference and the path to
real deployments.
"""

from __future__ import annotations

from decentral_bench.engines.base import EventSink, FinalParameters, ReportSink
from decentral_bench.engines.vectorized.asynchronous import AsyncLoop
from decentral_bench.engines.vectorized.gossip import GossipLoop
from decentral_bench.engines.vectorized.memory import keep_freed_memory
from decentral_bench.engines.vectorized.server import ServerLoop
from decentral_bench.engines.vectorized.stack import StackedRun
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.training import available_cpus, run_numerics


class VectorizedEngine:
    """Runs a method as one batched program (see the module docstring).

    `chunk` sets the agents per block (default: `memory.agents_per_call`); `dense`
    forces a dense (True) or sparse (False) mixing product; `batched` the batched
    (True) or agent-by-agent (False) gradients (default: the scenario's
    `resources.batched`).
    """

    name = "vectorized"
    deployed = False

    def __init__(self, chunk: int | None = None, dense: bool | None = None,
                 batched: bool | None = None) -> None:
        self.chunk = chunk
        self.dense = dense
        self.batched = batched

    def run(self, plan: MethodPlan, report: ReportSink, on_event: EventSink) -> FinalParameters:
        keep_freed_memory()
        with run_numerics(plan.scenario.training.deterministic, plan.seed, available_cpus()):
            stacked = StackedRun(plan, self.chunk, self.dense, self.batched, report, on_event)
            if plan.is_asynchronous:
                return AsyncLoop(stacked).run_rounds()
            if plan.is_gossip:
                return GossipLoop(stacked).run_rounds()
            return ServerLoop(stacked).run_rounds(on_event)
