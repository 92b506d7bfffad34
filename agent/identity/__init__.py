"""Who a kernel event belongs to: cgroup -> container -> pod -> workload and data tier.

Modules: ``cgroups`` (cgroup id -> path), ``containers`` (path -> runtime/container/pod uid),
``pods`` (pod uid/IP -> pod metadata from the Kubernetes API), ``tiers`` (data tier) and
``resolver`` (all of it combined into an ``Identity``). Importing this package does no work.
"""
