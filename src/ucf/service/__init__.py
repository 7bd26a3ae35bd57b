"""Use cases: what a user or a schedule asks ucf to do, over stores and runtime.

The web API, the CLI and the Lambda handlers stay thin by calling these.
"""
