"""ucf — the Universal Connector Framework.

Connectors are JSON descriptors; the runtime turns what they describe into one
stream of ``NormalisedSignal`` records for the downstream triage pipeline.
"""

__version__ = "0.1.0"
