"""Experts in the loop: a Label Studio round trip.

``export`` turns a dataset, a run cell or a folder of reconstructions into a Label Studio
project (labeling config, tasks, images, optional pre-annotations); ``load`` reads Label
Studio's JSON export back into a dataset with every annotator's labels kept; ``agreement``
measures how far annotators agree with each other and with a dataset's labels;
``review`` is a blind review by one rater from contact sheets and a CSV, no server needed.
"""

from .errors import AnnotateError

__all__ = ["AnnotateError"]
