"""Task relationships: which tasks help each other, and how to group them.

- :class:`Affinity`: a T×T table ``[recipient, source]`` with its provenance;
- estimators at one step: :func:`gradient_similarity` (cosine, inner product) and
  :func:`lookahead_affinity` (TAG, Fifty et al., NeurIPS 2021), both on the Jacobian
  engine and the lookahead of :mod:`polytask.balancing`;
- :class:`AffinityRecorder`: averages an estimator over a training run in a plain loop
  (the Trainer's version is :class:`polytask.training.AffinityCallback`);
- :class:`GroupTable`: trained groups' losses (Standley et al., ICML 2020), with the
  higher-order approximation;
- selectors: :func:`select_from_table` (Standley), :func:`select_tag` (TAG),
  :func:`select_beam` (many tasks), :func:`select` (dispatch);
- :func:`grouping_spec` / :func:`group_models`: from a grouping to models.
"""

from .affinity import Affinity
from .estimators import ESTIMATORS, gradient_similarity, lookahead_affinity
from .models import group_models, grouping_spec
from .recorder import AffinityRecorder
from .selection import (
    Grouping,
    check_groups,
    evaluate_selection,
    exact_selection,
    partition_score,
    select,
    select_beam,
    select_from_table,
    select_tag,
    tag_group_scores,
)
from .table import GroupEntry, GroupTable

__all__ = [
    "ESTIMATORS",
    "Affinity",
    "AffinityRecorder",
    "GroupEntry",
    "GroupTable",
    "Grouping",
    "check_groups",
    "evaluate_selection",
    "exact_selection",
    "gradient_similarity",
    "group_models",
    "grouping_spec",
    "lookahead_affinity",
    "partition_score",
    "select",
    "select_beam",
    "select_from_table",
    "select_tag",
    "tag_group_scores",
]
