"""Local DocPlanner and MyInvois simulators that speak the real protocols (SPEC §1).

Used by the daemon's tests, by ``drainer demo`` and by ``drainer sandbox``::

    from daemon.sandbox import DocPlannerClient, DocPlannerSandbox, SandboxClock

    clock = SandboxClock()
    client = DocPlannerClient(client_id="pl-id", client_secret="pl-secret")
    with DocPlannerSandbox(clients=[client], clock=clock) as dp:
        dp.enqueue("pl-id", 500)
        dp.faults.script(["503", "truncate"])
        ...  # point the daemon at dp.base_url
        clock.advance(72 * 3600)  # whatever is still queued expires on the next access

Modules: ``clock`` (sandbox time), ``faults`` (scripted/random failures), ``events`` and
``records`` (realistic payloads), ``server`` (HTTP plumbing), ``docplanner`` and
``myinvois`` (the two APIs), ``push`` (DocPlanner's push emitter), ``cli``
(``drainer sandbox``).
"""

from daemon.sandbox.clock import SandboxClock
from daemon.sandbox.docplanner import DocPlannerClient, DocPlannerSandbox
from daemon.sandbox.faults import Fault, Faults
from daemon.sandbox.myinvois import MyInvoisSandbox
from daemon.sandbox.tenancy import MyInvoisClient

__all__ = [
    "DocPlannerClient",
    "DocPlannerSandbox",
    "Fault",
    "Faults",
    "MyInvoisClient",
    "MyInvoisSandbox",
    "SandboxClock",
]
