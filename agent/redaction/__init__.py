"""Secrets masked before text leaves the node: command lines and free text (redact.py, with the
clients whose arguments carry secrets in clients.py) and credentials written into URLs
(url_credentials.py). Imports nothing else of the agent, so every layer (the pipeline's exec
lines, the exporters' endpoints, the CLI, the governor) can use the one set of rules."""
