"""The pure core: descriptor language, signals, field mapping, templates, sanitiser.

Nothing in this package performs I/O, reads the clock or the environment: time
is passed in, so every function here is deterministic and cheap to test.
"""
