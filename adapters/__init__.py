"""Adapters: ferry's edge to the world. One interface (:mod:`adapters.base`), three backends.

    engine --MoveSpec--> Backend.preflight/prepare/presync/cutover/verify/cleanup/rollback
                               |            |              |
                             sim.py     openvz/ (SSH)   proxmox/ (REST)

Adapters import :mod:`fleet` only; never ``service`` or ``planners``.
"""
