"""A long-running ClientApp process for a SuperNode started with `--isolation process` (a "warm" client).

By default a SuperNode starts a fresh `flwr-clientapp` process for every message, which re-imports JAX, rebuilds the
model, the input pipeline and the jitted step, and reloads them from JAX's persistent cache every round. This worker
instead stays up next to its SuperNode and runs every ClientApp task of that node in one process, so the trainer
(`client_app.get_trainer`: model skeleton, clip builder, compiled step, client records) and the client's last local
model (`client_state`'s in-memory copy) stay warm between rounds:

  flower-supernode ... --isolation process --port 9094 &
  python -m fedvssl_jax.federated.clientapp_worker --runtime-api-address 127.0.0.1:9094 --parent-pid $! &

It does what `flower-superexec` + `flwr-clientapp` do for one task, through the SuperNode's Runtime API (flwr 1.41):
acquire a task and its token (`AcquireTask`), pull the message, context, run and FAB, call the ClientApp, push the
reply and the task output, with a heartbeat while the task runs. Unlike `flwr-clientapp` it runs the ClientApp of
the `fedvssl_jax` installed on this machine (the FAB's project must be this one; the FAB itself is not installed),
which is what keeps the process warm across runs as well as rounds.

A task that raises is answered with an error reply (the server reports and skips that client, as with a failing
`flwr-clientapp`); the worker carries on. It exits when its parent (`--parent-pid`, the SuperNode) exits, on SIGINT /
SIGTERM, or when the SuperNode stays unreachable for `--max-wait-s` seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

logger = logging.getLogger(__name__)

PROJECT_NAME = "fedvssl-jax"  # [project].name in pyproject.toml: the FAB's fab_id is "<publisher>/<name>"


def _parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m fedvssl_jax.federated.clientapp_worker",
                              description=__doc__.split("\n", maxsplit=1)[0])
  p.add_argument("--runtime-api-address", default="127.0.0.1:9094",
                 help="the SuperNode's Runtime API, host:port (flower-supernode --port; default 127.0.0.1:9094)")
  p.add_argument("--root-certificates", default=None,
                 help="CA certificate of the Runtime API when flower-supernode serves it over TLS (--ssl-certfile); "
                      "without it the worker uses plain HTTP, as flower-supernode's own SuperExec does on 127.0.0.1")
  p.add_argument("--parent-pid", type=int, default=None, help="exit when this process (the SuperNode) exits")
  p.add_argument("--poll-s", type=float, default=0.1, help="seconds between task polls when idle (default 0.1)")
  p.add_argument("--max-wait-s", type=float, default=600.0,
                 help="exit after this many seconds without reaching the SuperNode (default 600)")
  return p.parse_args(argv)


def _runtime_client(address: str, root_certificates: bytes | None, component: str, token: str | None = None):
  from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
  from flwr.supercore.retry import make_simple_http_retry_invoker
  from flwr.supercore.runtime import RuntimeHttpClient

  interceptors = [RuntimeVersionHttpInterceptor(component_name=component)]
  if token is not None:
    interceptors.append(RuntimeTokenHttpInterceptor(token))
  return RuntimeHttpClient.from_server_address(server_address=address, insecure=root_certificates is None,
                                               root_certificates=root_certificates, interceptors=interceptors,
                                               retry_invoker=make_simple_http_retry_invoker())


def run_task(address: str, token: str, root_certificates: bytes | None, client_app) -> tuple[str, dict[str, float]]:
  """Runs one ClientApp task (the token's) in this process.

  Returns:
    (final sub-status "completed" / "failed", seconds spent {"pull": message in, "app": the ClientApp, "push": reply
    and task output out}).
  """
  from flwr.app import Message
  from flwr.app.error import Error
  from flwr.common.constant import ErrorCode, SubStatus
  from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
  from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

  client = _runtime_client(address, root_certificates, "flwr-clientapp", token)
  heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
  heartbeat.start()
  message = context = reply = None
  sub_status, details = SubStatus.FAILED, "ClientApp task failed"
  times = {"pull": 0.0, "app": 0.0, "push": 0.0}
  t = time.monotonic()
  try:
    message, context, run, _ = pull_task_input(client)
    times["pull"] = time.monotonic() - t
    t = time.monotonic()
    project = str(run.fab_id).split("/")[-1]
    if project != PROJECT_NAME:
      raise RuntimeError(f"run {run.run_id} is app {run.fab_id!r}; this worker only runs {PROJECT_NAME!r} "
                         "(start flower-supernode without --isolation process for other apps)")
    reply = client_app(message=message, context=context)
    times["app"] = time.monotonic() - t
    sub_status, details = SubStatus.COMPLETED, ""
  except Exception as ex:  # pylint: disable=broad-except
    logger.exception("ClientApp task raised")
    reason = f"{type(ex)}:<'{ex}'>"
    sub_status, details = SubStatus.FAILED, reason
    if message is not None:
      reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=message)
  finally:
    t = time.monotonic()
    try:
      if reply is not None and context is not None:
        push_message(client, reply, context)
    except Exception:  # pylint: disable=broad-except
      logger.exception("failed to push the reply")
      sub_status = SubStatus.FAILED
    push_task_output(client=client, context=context, sub_status=sub_status, details=details)
    heartbeat.stop()
    client.close()
    times["push"] = time.monotonic() - t
  return sub_status, times


def main(argv=None) -> int:
  args = _parse_args(argv)
  # Warnings and errors only (httpx logs every poll at INFO, Orbax every save); our own lines are printed.
  logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s [clientapp_worker] %(message)s")
  from fedvssl_jax.federated import client_app as client_app_lib

  client_app_lib.setup_process_env()
  from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=no-name-in-module
  from flwr.supercore.constant import TaskType

  if args.parent_pid is not None:
    from flwr.supercore.app_utils import start_parent_process_monitor

    start_parent_process_monitor(args.parent_pid)  # SIGINT to this process when the SuperNode exits
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
  root = None
  if args.root_certificates:
    with open(args.root_certificates, "rb") as f:
      root = f.read()
  client = _runtime_client(args.runtime_api_address, root, "SuperExec")
  app = client_app_lib.app
  print(f"[clientapp_worker] pid {os.getpid()} serving ClientApp tasks of {args.runtime_api_address}", flush=True)
  last_ok = time.monotonic()
  done = 0
  try:
    while True:
      try:
        res = client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value],
                                                    agentapp_fab_hashes=[]))
        last_ok = time.monotonic()
      except Exception as ex:  # pylint: disable=broad-except
        if time.monotonic() - last_ok > args.max_wait_s:
          print(f"[clientapp_worker] SuperNode {args.runtime_api_address} unreachable for {args.max_wait_s:.0f}s "
                f"({ex}); exiting", flush=True)
          return 1
        time.sleep(1.0)
        continue
      if res.HasField("task") and res.token:
        t0 = time.monotonic()
        client_app_lib.LAST_TIMES.clear()
        status, times = run_task(args.runtime_api_address, res.token, root, app)
        done += 1
        parts = ", ".join(f"{k} {v:.2f}s" for k, v in client_app_lib.LAST_TIMES.items())
        print(f"[clientapp_worker] task {res.task.task_id} (run {res.task.run_id}) {status} in "
              f"{time.monotonic() - t0:.1f}s (pull {times['pull']:.2f}s, app {times['app']:.1f}s [{parts}], push "
              f"{times['push']:.2f}s); {done} tasks so far", flush=True)
        continue
      time.sleep(args.poll_s)
  except KeyboardInterrupt:  # the parent monitor's SIGINT
    print("[clientapp_worker] parent exited; stopping", flush=True)
    return 0
  finally:
    client.close()


if __name__ == "__main__":
  sys.exit(main())
