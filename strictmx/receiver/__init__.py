"""The receiver core: everything of strictmx that is not a single policy.

Its public names are exported by the `strictmx` package itself.
"""
