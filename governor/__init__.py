"""The cardinality governor: series budgets per data tier, reports, alerts and remediation.

Flow (each module one step; nothing runs at import):

    sources (promapi: Prometheus HTTP API, scrape: /metrics) -> inventory (series sets)
    inventory + budgets (validated YAML) + tiers (classification) -> analysis
        usage (rules, dashboards, query log), churn and growth (from history, SQLite)
    analysis -> report (table | markdown | json), rules (+ runbooks/), alerts (Alertmanager),
                service (bcgov_governor_* and the loop), remediation (relabel, OTel, VM)

`evaluation.evaluate` runs one pass end to end; the CLI lives in `bcgov/cli_budget.py` and
`bcgov/cli_governor.py`.
"""
