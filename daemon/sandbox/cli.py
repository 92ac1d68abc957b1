"""``drainer sandbox``: run the DocPlanner and MyInvois simulators alone, for trying configs.

Prints the base URLs, sample credentials, a config snippet and curl commands, then
serves until SIGINT or SIGTERM and exits 0. The signal handlers only set a flag; the
servers are stopped by the main thread, and the previous handlers are restored.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from daemon.runtime.signals import SignalFlag, capture_signals
from daemon.sandbox.clock import SandboxClock
from daemon.sandbox.docplanner import DocPlannerClient, DocPlannerSandbox
from daemon.sandbox.faults import all_kinds_rates
from daemon.sandbox.myinvois import MyInvoisSandbox
from daemon.sandbox.tenancy import MyInvoisClient

DP_CLIENT = DocPlannerClient("sandbox-dp", "sandbox-dp-secret")
MI_CLIENT = MyInvoisClient("sandbox-mi", "sandbox-mi-secret")
PUSH_CLIENT_ID = "sandbox-dp-push"
SCRATCH_REDIS = "redis://127.0.0.1:6380/0"  # not 6379: a system Redis may be there
SCRATCH_SPOOL = Path(tempfile.gettempdir()) / "drainer-sandbox-spool"
SCRATCH_LISTEN = "127.0.0.1:9465"  # not 9464: a real daemon may listen there


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``drainer sandbox`` flags."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add("--docplanner-port", type=int, default=8301, help="DocPlanner port (default 8301)")
    add("--myinvois-port", type=int, default=8302, help="MyInvois port (default 8302)")
    add(
        "--identity-port",
        type=int,
        default=None,
        help="serve the MyInvois identity service (/connect/token) on its own port",
    )
    add("--notifications", type=int, default=1000, metavar="N", help="DocPlanner queue seed")
    add(
        "--myinvois-notifications",
        type=int,
        default=500,
        metavar="N",
        help="MyInvois notifications spread over the last 3 days (default 500)",
    )
    add("--arrival-rate", type=float, default=0.0, help="new DocPlanner notifications/second")
    add("--myinvois-arrival-rate", type=float, default=0.0, help="new MyInvois records/second")
    add("--latency", type=float, default=0.0, metavar="SECONDS", help="delay every response")
    add("--fault-rate", type=float, default=0.0, help="probability of a random fault (0..1)")
    add("--requests-per-hour", type=int, default=8000, help="DocPlanner GET budget per hour")
    add("--requests-per-minute", type=int, default=12, help="MyInvois requests per minute")
    add("--push-url", default=None, help="add a push-enabled DocPlanner client pushing here")
    add("--push-token", default=None, help="the push key sent with every push")
    add("--push-header", default="X-Drainer-Token", help="the header the push key goes in")
    add("--seed", type=int, default=0, help="seed for generated data and random faults")
    # The printed config points at safe local values: never the system Redis or /var/lib.
    add(
        "--redis-url",
        default=SCRATCH_REDIS,
        help=f"[redis] url of the printed config (default {SCRATCH_REDIS}: a scratch Redis)",
    )
    add("--spool-dir", default=str(SCRATCH_SPOOL), help=f"[spool] dir (default {SCRATCH_SPOOL})")
    add("--listen", default=SCRATCH_LISTEN, help=f"[server] listen (default {SCRATCH_LISTEN})")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Start both sandboxes, print how to use them, serve until a signal; 0 on a clean stop."""
    out = out or sys.stdout
    if not 0.0 <= args.fault_rate <= 1.0:
        print("drainer sandbox: --fault-rate must be between 0 and 1", file=sys.stderr)
        return 2
    if args.push_url and not args.push_url.startswith(("http://", "https://")):
        print("drainer sandbox: --push-url must be an http(s) URL", file=sys.stderr)
        return 2
    clock = SandboxClock()
    dp_clients = [DP_CLIENT]
    if args.push_url:
        secret = f"{PUSH_CLIENT_ID}-secret"
        dp_clients.append(
            DocPlannerClient(
                PUSH_CLIENT_ID, secret, args.push_url, args.push_token, args.push_header
            )
        )
    dp = DocPlannerSandbox(
        dp_clients,
        clock=clock,
        latency=args.latency,
        requests_per_hour=args.requests_per_hour,
        host=args.host,
        port=args.docplanner_port,
        seed=args.seed,
    )
    mi = MyInvoisSandbox(
        [MI_CLIENT],
        clock=clock,
        latency=args.latency,
        requests_per_minute=args.requests_per_minute,
        host=args.host,
        port=args.myinvois_port,
        identity_port=args.identity_port,
        seed=args.seed,
    )
    signals = SignalFlag()
    try:
        dp.start()
        mi.start()
    except OSError as exc:
        dp.stop()
        print(f"drainer sandbox: cannot listen: {exc}", file=sys.stderr)
        return 1
    try:
        with capture_signals(signals):
            for client in dp_clients:
                dp.enqueue(client.client_id, args.notifications)
            mi.add_notifications(MI_CLIENT.client_id, args.myinvois_notifications)
            if args.fault_rate > 0:
                dp.faults.set_rates(all_kinds_rates(args.fault_rate), seed=args.seed)
                mi.faults.set_rates(all_kinds_rates(args.fault_rate), seed=args.seed)
            if args.arrival_rate > 0:
                dp.start_arrivals(args.arrival_rate)
            if args.myinvois_arrival_rate > 0:
                mi.start_arrivals(args.myinvois_arrival_rate)
            if args.push_url:
                threading.Thread(target=dp.push, args=(PUSH_CLIENT_ID,), daemon=True).start()
            out.write(banner(dp, mi, args, clock))
            out.flush()
            while not signals.sleep(0.2):
                pass
    finally:
        dp.stop()
        mi.stop()
    out.write("sandbox stopped\n")
    out.flush()
    return 0


def banner(
    dp: DocPlannerSandbox, mi: MyInvoisSandbox, args: argparse.Namespace, clock: SandboxClock
) -> str:
    """What ``drainer sandbox`` prints once it is serving."""
    start_at = (clock.utcnow() - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    dp_url, mi_url, id_url = dp.base_url, mi.base_url, mi.identity_url
    lines = [
        f"DocPlanner sandbox: {dp_url}  (token {dp_url}/oauth/v2/token, "
        f"API {dp_url}/api/v3/integration)",
        f"  client_id {DP_CLIENT.client_id}  client_secret {DP_CLIENT.client_secret}"
        f"  ({args.notifications} notifications queued)",
    ]
    if args.push_url:
        lines.append(
            f"  push client_id {PUSH_CLIENT_ID}  client_secret {PUSH_CLIENT_ID}-secret"
            f"  pushing to {args.push_url} (failed pushes are re-sent after a release)"
        )
    lines += [
        f"MyInvois sandbox:   {mi_url}  (token {id_url}/connect/token, "
        f"API {mi_url}/api/v1.0/notifications/taxpayer)",
        f"  client_id {MI_CLIENT.client_id}  client_secret {MI_CLIENT.client_secret}"
        f"  ({args.myinvois_notifications} notifications over the last 3 days)",
        "",
        "# drainer.toml: a complete config for these sandboxes (drainer run --config FILE)",
        "[redis]",
        f'url = "{args.redis_url}"  # a scratch Redis of your own, e.g.: '
        "redis-server --port 6380 --save ''",
        "",
        "[spool]",
        f'dir = "{args.spool_dir}"',
        "",
        "[server]",
        f'listen = "{args.listen}"',
        "",
        "[log]",
        'format = "console"',
        "",
        "[[docplanner]]",
        'name = "sandbox"',
        f'base_url = "{dp_url}"',
        f'client_id = "{DP_CLIENT.client_id}"',
        f'client_secret = "{DP_CLIENT.client_secret}"',
        f"requests_per_hour = {args.requests_per_hour}",
        "",
        "[[myinvois]]",
        'name = "sandbox"',
        f'base_url = "{mi_url}"',
        f'identity_url = "{id_url}"',
        f'client_id = "{MI_CLIENT.client_id}"',
        f'client_secret = "{MI_CLIENT.client_secret}"',
        f'start_at = "{start_at}"',
        f"requests_per_minute = {args.requests_per_minute}",
        "",
        "# try it",
        f"TOKEN=$(curl -s -u {DP_CLIENT.client_id}:{DP_CLIENT.client_secret} "
        f"-d 'grant_type=client_credentials&scope=integration' {dp_url}/oauth/v2/token"
        " | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f"curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Accept: application/vnd.docplanner+json'"
        f" '{dp_url}/api/v3/integration/notifications/multiple?limit=2'",
        f"MI=$(curl -s -d 'client_id={MI_CLIENT.client_id}&client_secret="
        f"{MI_CLIENT.client_secret}&grant_type=client_credentials&scope=InvoicingAPI' "
        f"{id_url}/connect/token"
        " | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f'curl -s -H "Authorization: Bearer $MI" '
        f"'{mi_url}/api/v1.0/notifications/taxpayer?pageNo=1&pageSize=2'",
        "",
        "Serving until Ctrl-C (SIGINT) or SIGTERM.",
    ]
    return "\n".join(lines) + "\n"
