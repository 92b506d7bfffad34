"""Postmortem evidence bundles: `bcgov evidence export` and `bcgov evidence verify`.

The front door is `export.export_bundle` and `manifest.verify`; the other modules each hold one
concern (time windows, scope, Prometheus ranges, alerts, telemetry files, timeline, plots,
postmortem text, manifest, bundle writing). Nothing happens at import.
"""
