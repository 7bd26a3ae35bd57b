"""The Lambda entry points: ``ucf.aws.handlers.<module>.handler`` (see :mod:`ucf.aws`).

Each module is one Lambda function with its own :class:`~ucf.aws.container.Container`
(in AWS, each function runs in execution environments of its own).

Importing this package also keeps httpx's command-line client out of the
function: ``import httpx`` loads ``httpx._main`` (and with it click, rich and
pygments, about a fifth of a cold start's imports) whenever click is installed,
and the artifact ships click for ``ucf``'s own CLI. A ``None`` entry in
``sys.modules`` makes that import fail, which httpx handles by defining a
``main()`` that explains how to install the CLI. Nothing in a Lambda runs
httpx's CLI; in a process that already imported httpx this changes nothing.

It also serves the regular expressions the function's imports compile from the
artifact's build-time cache (:mod:`ucf.aws.regex_cache`), before any of them is
imported; without that file (a checkout) ``re`` is left as it is.
"""

import sys

from ucf.aws import regex_cache

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
regex_cache.install()
