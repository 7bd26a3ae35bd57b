"""The runtime: everything that talks to the outside world on a descriptor's behalf.

HTTP client and retries (``http``), the SSRF guard (``ssrf``), log redaction
(``redaction``); auth flows, polling, scheduling and health build on them.
"""
