"""An HTTPS double of the Proxmox VE API, for tests of ferry's proxmox adapter.

    ferry snapshot (Inventory) --World.from_inventory--> World (nodes, CTs, HA, replication, tasks)
                                                            ^ tick(): tasks end in scaled time
    proxmoxer --HTTPS, PVEAPIToken--> server.py --routes.py (real paths, params.py validation)-->
        guests.py (LXC: migrate, status, config, destroy) / backups.py (vzdump, restore) /
        cluster.py (HA, replication, nextid) / remote.py (remote_migrate to another double,
        /cluster/status) --> World --snapshot()--> Inventory (for comparisons)
    nodeshell.py: ``pct unlock`` on a node, for what ferry runs over SSH (no API has it)

What a test or bench reads back: ``world.requests`` / ``world.calls`` (every request served, with
its raw parameters and UPID), ``world.timeline`` (each container's node/status changes in
simulated seconds, for downtime), ``world.snapshot()``. Replication sends whole volumes first,
then what changed at the container's ``dirty_mb_per_s`` since the last replicated snapshot.

Faults a test can inject through ``world.faults`` (model.Faults) or the world itself: HTTP 5xx on
the next N requests, a task ending with an error text or with warnings, slow tasks, a container
locked for some simulated time (``Guest.lock`` / ``lock_until``).
"""
