"""``python -m harness bench``: see ``command`` for what is timed; its flags (``args``) import
nothing heavy."""
