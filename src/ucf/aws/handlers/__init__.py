"""The Lambda entry points: ``ucf.aws.handlers.<module>.handler`` (see :mod:`ucf.aws`).

Each module is one Lambda function with its own :class:`~ucf.aws.container.Container`
(in AWS, each function runs in execution environments of its own).
"""
