"""Typed errors of the pure layer. Handlers translate them into conditions or kopf retry errors."""

from __future__ import annotations


class SpecError(ValueError):
    """The spec cannot work (on the candidate hardware or at all). Becomes Degraded=True with ``reason``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class NoCandidateNodes(SpecError):
    """No node matches the endpoint's scheduling constraints and has enough ``nvidia.com/gpu``."""

    def __init__(self, message: str):
        super().__init__("NoCandidateNodes", message)


class ProbePending(Exception):
    """Some candidate nodes have no GPU labels and their NVML probe has not answered yet."""

    def __init__(self, nodes: list[str]):
        super().__init__(f"waiting for the NVML probe on node(s) {', '.join(nodes)}")
        self.nodes = nodes
