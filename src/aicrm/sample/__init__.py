"""Sample data: synthetic databases for tests, demos and benchmarks.

:func:`generate_legacy` fills a database at migration 000 with a realistic,
seedable legacy CRM (leads, clients converted from them, contacts), with a known
number of each anomaly that migration 001 has to deal with.
"""

from aicrm.sample._legacy import BLOCKING, RESOLVABLE, generate_legacy

__all__ = ["BLOCKING", "RESOLVABLE", "generate_legacy"]
