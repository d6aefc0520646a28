"""Running the process: the command line (``cli``), the worker processes (``workers``), the
HTTP server and its protocol guards (``server``, ``tls``). Above every other layer: it builds
the app and serves it (docs/design/layers.md)."""
