"""The ``xrec`` command line: thin layers over the public API.

One vocabulary across commands: ``--model`` is always the encoder, ``--store`` always the
embedding cache.
"""
