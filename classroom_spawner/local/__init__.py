"""Local stand-ins used only by the tests, the demo and the benchmarks.

Nothing in this subpackage is imported by the production code path
(spawner, authenticator, roster). Production always talks to a real
Kubernetes cluster and a real identity provider.
"""
