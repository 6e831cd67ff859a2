"""``python -m harness analyze``: spectral entropy vs attention distance of a trained run
(``command``); its flags (``args``) import nothing heavy."""
