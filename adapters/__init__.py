"""Adapters: ferry's edge to the world. One interface (:mod:`adapters.base`), three backends.

    engine --MoveSpec--> run_step: refuse requests the backend cannot honour (Backend.refuses)
                             --> Backend.preflight/prepare/presync/cutover/verify/cleanup/rollback
                                   |            |              |
                                 sim/      openvz/ (SSH)   proxmox/ (REST)
    engine --MoveSpec--> Backend.observe -> Observation (both ends, read from the cluster)

Adapters import :mod:`fleet` only; never ``service`` or ``planners``.
"""
