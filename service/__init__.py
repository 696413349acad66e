"""The running system: job store, migration engine, CLI, REST API, scheduler, metrics.

    CLI / API --plan--> planners --Plan--> jobs.create_job (store, locks)
                                               |
                          Engine.run_job --> MoveSaga per move --> adapters (Backend steps)
                                               |                         |
                                          store: moves, journal <--------+
"""
