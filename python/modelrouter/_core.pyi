# Type stubs of the compiled extension; checked against it with `python -m mypy.stubtest`.
__version__: str
