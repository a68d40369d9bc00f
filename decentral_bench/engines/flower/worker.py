"""A long-lived ClientApp process for a SuperNode started with `--isolation process`.

By default a SuperNode runs every message in a fresh `flwr-clientapp` process,
which imports torch and Flower again and rebuilds the agent's data each round
(seconds per message for a model that trains in milliseconds). With
`--isolation process` the SuperNode leaves running ClientApps to a process of
the user's choosing, which takes tasks from the SuperNode's Runtime API. This
is such a process, and it stays up:

- it asks the SuperNode for ClientApp tasks (`AcquireTask`, as Flower's
  SuperExec does), pausing from `min_poll` up to `max_poll` seconds while none
  comes;
- it runs each one in this process, as `flwr-clientapp` would: pulls the
  message and the node's context, calls the ClientApp, pushes the reply and the
  context back, and sends task heartbeats while it runs; an exception becomes
  an error reply, as in Flower;
- it loads the ClientApp with Flower's own loader from this project's folder
  (`[tool.flwr.app.components]` in its pyproject.toml), which refuses a run
  whose FAB is another app or another version. The module stays imported, so
  what the ClientApp keeps between calls (parsed plans, agents' data) survives.

    python -m decentral_bench.engines.flower.worker --runtime-api-address 127.0.0.1:9094 --insecure
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from flwr.app import Context, Message
from flwr.app.error import Error
from flwr.clientapp import ClientApp
from flwr.clientapp.utils import get_load_client_app_fn
from flwr.common.constant import ErrorCode, SubStatus
from flwr.common.serde import context_from_proto, run_from_proto
from flwr.proto.node_pb2 import Node
from flwr.proto.runtime_pb2 import (
    AcquireTaskRequest,
    PullAppMessagesRequest,
    PullTaskInputRequest,
    SendTaskHeartbeatRequest,
)
from flwr.supercore.constant import TaskType
from flwr.supercore.inflatable.inflatable_protobuf_utils import (
    make_confirm_message_received_fn_protobuf,
    make_pull_object_fn_protobuf,
)
from flwr.supercore.inflatable.inflatable_utils import pull_and_inflate_object_from_tree
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.run import Run
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supercore.task_identity import TaskIdentity
from flwr.supernode.runtime.run_clientapp import push_message, push_task_output

APP_FOLDER = Path(__file__).resolve().parents[3]  # where pyproject.toml is
HEARTBEAT_INTERVAL_S = 20.0  # Flower expects one within 2 × 30 s
logger = logging.getLogger(__name__)

AppLoader = Callable[[str, str, str], ClientApp]


class Connection:
    """Where the SuperNode's Runtime API is and how to reach it."""

    def __init__(self, address: str, insecure: bool, root_certificates: str | None) -> None:
        self.address = address
        self.insecure = insecure
        self.root_certificates = root_certificates

    def client(self, token: str | None = None) -> RuntimeHttpClient:
        """A Runtime API client; with `token`, one that acts for that task."""
        interceptors: list = [RuntimeVersionHttpInterceptor(component_name="flwr-clientapp")]
        if token is not None:
            interceptors.append(RuntimeTokenHttpInterceptor(token))
        return RuntimeHttpClient.from_server_address(
            server_address=self.address, insecure=self.insecure,
            root_certificates=self.root_certificates, interceptors=interceptors,
            retry_invoker=make_simple_http_retry_invoker())


def pull_task_input(client: RuntimeHttpClient) -> tuple[Message, Context, Run]:
    """The task's message, the node's context and the run.

    As Flower's `run_clientapp.pull_task_input`, but the message's objects are
    pulled with short pauses (10 ms, doubling to 0.2 s) instead of Flower's
    1 s and 2 s: a prompt worker asks while the SuperNode is still fetching them.
    """
    task = client.PullTaskInput(PullTaskInputRequest())
    TaskIdentity.task_id = task.task_id
    TaskIdentity.run_id = task.run.run_id
    TaskIdentity.node_id = task.context.node_id
    context, run = context_from_proto(task.context), run_from_proto(task.run)
    pulled = client.PullMessages(PullAppMessagesRequest())
    if not pulled.messages_list:
        raise RuntimeError("the SuperNode gave a task without a message")
    node = Node(node_id=context.node_id)
    tree = pulled.message_object_trees[0]
    message = pull_and_inflate_object_from_tree(
        tree, make_pull_object_fn_protobuf(client.PullObject, node, context.run_id),
        make_confirm_message_received_fn_protobuf(client.ConfirmMessageReceived, node,
                                                  context.run_id),
        return_type=Message, initial_backoff=0.01, backoff_cap=0.2)
    message.metadata.__dict__["_message_id"] = tree.object_id  # as Flower sets it
    return message, context, run


@contextmanager
def heartbeats(client: RuntimeHttpClient) -> Iterator[None]:
    """Tell the SuperNode every `HEARTBEAT_INTERVAL_S` that the task is alive, while
    the block runs."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(HEARTBEAT_INTERVAL_S):
            try:
                client.SendTaskHeartbeat(SendTaskHeartbeatRequest())
            except httpx.HTTPError as error:
                logger.warning("task heartbeat failed: %s", error)

    threading.Thread(target=beat, name="task-heartbeat", daemon=True).start()
    try:
        yield
    finally:
        done.set()


def run_task(connection: Connection, token: str, load_app: AppLoader) -> None:
    """Run one ClientApp task and hand its reply and the node's context back."""
    client = connection.client(token)
    message: Message | None = None
    context: Context | None = None
    reply: Message | None = None
    status, details = SubStatus.FAILED, "ClientApp task failed due to unknown reason"
    try:
        with heartbeats(client):
            message, context, run = pull_task_input(client)
            client_app = load_app(run.fab_id, run.fab_version, run.fab_hash)
            reply = client_app(message=message, context=context)
            status, details = SubStatus.COMPLETED, ""
    except Exception as error:  # the same error reply flwr-clientapp sends
        logger.exception("the ClientApp raised an exception")
        details = f"{type(error)}:<'{error}'>"
        if message is not None:
            reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details),
                            reply_to=message)
    try:
        if reply is not None and context is not None:
            push_message(client, reply, context)
    finally:
        push_task_output(client, context, status, details)
        client.close()


def acquire(client: RuntimeHttpClient) -> str | None:
    """The token of a pending ClientApp task, if the SuperNode has one."""
    answer = client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP]))
    return answer.token if answer.HasField("task") and answer.token else None


def serve(connection: Connection, load_app: AppLoader, stop: threading.Event,
          min_poll: float = 0.005, max_poll: float = 0.2) -> None:
    """Take and run ClientApp tasks until `stop` is set; the pause between looks
    doubles from `min_poll` to `max_poll` while there is nothing to do."""
    client = connection.client()
    pause = min_poll
    try:
        while not stop.is_set():
            token = acquire(client)
            if token is None:
                stop.wait(pause)
                pause = min(2 * pause, max_poll)
                continue
            run_task(connection, token, load_app)
            pause = min_poll
    finally:
        client.close()


def app_loader(folder: Path) -> AppLoader:
    """Flower's ClientApp loader for the app in `folder` (checks the FAB id and version)."""
    return get_load_client_app_fn(default_app_ref="", app_path=str(folder), multi_app=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A long-lived ClientApp process for a "
                                                 "SuperNode started with --isolation process.")
    parser.add_argument("--runtime-api-address", required=True,
                        help="the SuperNode's Runtime API (its --host:--port)")
    parser.add_argument("--insecure", action="store_true",
                        help="plain HTTP to the Runtime API (a SuperNode without "
                             "--ssl-certfile)")
    parser.add_argument("--root-certificates", default=None,
                        help="CA certificate of a Runtime API served over TLS")
    parser.add_argument("--app", type=Path, default=APP_FOLDER,
                        help="folder of the Flower app (its pyproject.toml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    stop = threading.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: stop.set())
    connection = Connection(args.runtime_api_address, args.insecure, args.root_certificates)
    logger.info("serving ClientApp tasks of %s from %s", args.app, args.runtime_api_address)
    serve(connection, app_loader(args.app), stop)


if __name__ == "__main__":
    main()
