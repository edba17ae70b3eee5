"""The ``xrec`` command line: thin layers over the public API."""
