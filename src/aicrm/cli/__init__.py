"""The command line: a thin shell over the library (``aicrm.migrate``, ``aicrm.db``)."""
