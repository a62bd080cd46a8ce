"""Post-processing options (score threshold, NMS IoU, detections kept, candidates): the one home
of their defaults, for prediction and for evaluation.

Every caller reads them from here: `postprocess()`'s keywords, the `predict`, `evaluate` and
`compare` commands, the server's `/predict` query, the evaluation report and the trainer's
validation. Importing this module loads nothing else (the command line reads it at start, before
torch), so it is not `onestage.runtime.postprocess` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

CANDIDATE_RULES = ("all", "argmax")


@dataclass(frozen=True)
class PredictOptions:
    """Post-processing settings; the defaults are Ultralytics' predict (see EVALUATION)."""

    conf: float = 0.25  # scores > conf are candidates
    iou: float = 0.5  # NMS: IoU > iou suppresses
    max_det: int = 100  # detections kept per image
    pre_nms_topk: int = 400  # candidates per image that go through NMS
    candidates: str = "all"  # a CANDIDATE_RULES name; "argmax" = the seed's one class per prior


# What `onestage predict`, `Detector.predict` and the server use unless told otherwise.
PREDICTION = PredictOptions()
# Evaluation keeps nearly every candidate, as COCO and VOC scoring expect (Ultralytics' val).
EVALUATION = PredictOptions(conf=0.001)
