"""See noetl/__init__.py: the `noetl.worker` names a python step's code may import."""
