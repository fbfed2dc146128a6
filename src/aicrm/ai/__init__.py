"""AI on the CRM: annotations, lead scoring, and conversion-pattern analysis.

* :mod:`aicrm.ai.annotations` — the per-annotator structure in ``ai_annotations``,
  merged in SQL so concurrent annotators never erase each other;
* :mod:`aicrm.ai.scoring` — ``train``, ``score`` and ``explain`` (``aicrm ai``);
* :mod:`aicrm.ai.analysis` — conversion rates, funnel, drivers and changes
  (``aicrm analyze conversions``), rendered by :mod:`aicrm.ai.report_html`.

numpy is imported with this package; scikit-learn, LightGBM, scipy and matplotlib lazily, by the
functions that need them (the CLI imports this package only inside its commands).
"""

from aicrm.ai.annotations import annotate, annotate_many, read, remove
from aicrm.ai.scoring import explain, load_active, score, train

__all__ = [
    "annotate",
    "annotate_many",
    "explain",
    "load_active",
    "read",
    "remove",
    "score",
    "train",
]
