"""``ucf sandbox``: ucf against faithful fakes of every catalogue API, with live activity.

- :mod:`~ucf.sandbox.fleet` starts the fake of each catalogue connector (its scenario's);
- :mod:`~ucf.sandbox.server` runs ``ucf serve`` as a child process;
- :mod:`~ucf.sandbox.live` plays activity and watches what the server makes of it;
- :mod:`~ucf.sandbox.session` puts them together and stops them cleanly;
- :mod:`~ucf.sandbox.console` prints it all.
"""

from ucf.sandbox.session import SandboxError, SandboxOptions, run_sandbox

__all__ = ["SandboxError", "SandboxOptions", "run_sandbox"]
