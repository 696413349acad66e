"""The two ways an OpenVZ move ends on the nodes: cleanup after a verified switch, rollback
after a failed one.

    cleanup:  STATE_SCRIPT on the source --retire.due--> stop forwarders (DNS record restored)
              | retire the source area (only while the destination stands as verified)
              | CleanupPending naming what is left and when
    rollback: stop + remove the destination copy (if ferry created it), rules and forwarders
              away, the source config renamed back from ``.migrated``, the source started if it
              ran, the DNS record back on the source's address, the move's record removed

Both are steps of the backend (backend.py delegates to them); each observes the nodes first, so
a call repeated after a crash finishes what the last one left.
"""

from __future__ import annotations

from adapters.base import CleanupPending, MoveSpec, PermanentError, StepContext
from adapters.openvz import forwarding, inventory, readdress, retire
from adapters.openvz.observe import ObservingBackend


def cleanup(backend: ObservingBackend, spec: MoveSpec, ctx: StepContext) -> None:
    """Do what is due now (retire.py); raise CleanupPending naming what is left and when.

    Forwarders stop when ``forward_seconds`` have passed (they also expire on their own);
    the source area is deleted ``retention_hours`` after the move was prepared, and only
    while the destination still stands as verified. The engine calls cleanup again later
    (``ferry cleanup``, ``ferry serve``) until nothing is left.
    """
    shell, state = backend.shell, backend._state(spec)
    words = backend._run(spec.source, ["sh", "-c", retire.STATE_SCRIPT, "ferry", state],
                         ctx).out.split()
    due = retire.due(words, backend.settings.retention_hours, spec.source)
    if due.forwarders:
        forwarding.stop_forwarders(shell, spec.source, spec.ct, state, ctx.journal)
        if backend.records is not None and spec.ips:  # nobody uses the old address any more
            readdress.restore(shell, backend.records, spec.source, state, spec.ips[0],
                              ctx.journal)
    if due.source_area and (conf := backend._conf(spec.source, spec.ct, ctx, ".migrated")):
        _guard_retirement(backend, spec, due.source_was_running, ctx)
        backend._run(spec.source, ["rm", "-rf", "--one-file-system", backend._private(conf, spec.ct),
                                   f"/etc/vz/conf/{spec.ct}.conf.migrated"], ctx)
    if due.forwarders and due.source_area:
        backend._run(spec.source, ["rm", "-rf", state], ctx)
        return
    raise CleanupPending(due.remains(spec.source, spec.ct))


def _guard_retirement(backend: ObservingBackend, spec: MoveSpec, was_running: bool,
                      ctx: StepContext) -> None:
    """The source copy is the only way back: delete it only while the destination stands
    as verify left it (running if the source ran) and the source is not running."""
    if backend._status(spec.source, spec.ct, ctx) == "running":
        raise PermanentError(f"CT {spec.ct} runs on {spec.source}; not retiring it")
    want = "running" if was_running else "stopped"
    found = backend._status(spec.target, spec.dest_ct, ctx)
    if found != want:
        raise PermanentError(f"CT {spec.dest_ct} is {found} on {spec.target}, expected {want};"
                             f" keeping the source copy of CT {spec.ct} on {spec.source}")


def rollback(backend: ObservingBackend, spec: MoveSpec, ctx: StepContext) -> None:
    """Put everything back as it was before the move: the destination copy goes only if ferry
    created it (``target_ours``, or nothing was recorded yet); the source comes back as it was."""
    shell, state = backend.shell, backend._state(spec)
    ours = backend._marker(spec, "target_ours", ctx) or not backend._marker(spec, "prepared", ctx)
    if backend._status(spec.target, spec.dest_ct, ctx) == "running":
        backend._run(spec.target, ["vzctl", "stop", spec.dest_ct], ctx)
    if ours:
        backend._run(spec.target, ["rm", "-rf", "--one-file-system",
                                   backend._private(None, spec.dest_ct),
                                   f"/etc/vz/conf/{spec.dest_ct}.conf"], ctx)
    forwarding.remove_rules(shell, spec.target, spec.ct, ctx.journal)
    forwarding.stop_forwarders(shell, spec.source, spec.ct, state, ctx.journal)
    backend._run(spec.source, ["sh", "-c", '[ -f "$1" ] || mv -f "$1.migrated" "$1" 2>/dev/null; true',
                               "ferry", f"/etc/vz/conf/{spec.ct}.conf"], ctx)
    was_running = backend._marker(spec, "source_running", ctx)
    if was_running and backend._status(spec.source, spec.ct, ctx) == "stopped":
        backend._run(spec.source, ["vzctl", "start", spec.ct], ctx)
    old_ips = inventory.ips_of(backend._conf(spec.source, spec.ct, ctx) or {})
    if backend.records is not None and old_ips:  # the record names the source's address again
        readdress.restore(shell, backend.records, spec.source, state, old_ips[0], ctx.journal)
    backend._run(spec.source, ["rm", "-rf", state], ctx)
