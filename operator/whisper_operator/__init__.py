"""kubewhisper operator: reconciles WhisperEndpoint resources into GPU-aware Deployments and Services.

The folder is ``operator/`` for the design's sake, but the importable package is ``whisper_operator`` so that
nothing named ``operator`` shadows Python's standard library module.
"""

GROUP = "kubewhisper.dev"
VERSION = "v1alpha1"
PLURAL = "whisperendpoints"
KIND = "WhisperEndpoint"
MANAGED_BY = "kubewhisper-operator"
