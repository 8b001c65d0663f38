"""Task names and queues. The API enqueues by name, so it never imports worker code."""

from __future__ import annotations

PREDICT_TASK = "brainmri.predict"
EVALUATE_TASK = "brainmri.evaluate"
TRAIN_TASK = "brainmri.train"
RETRAIN_CHECK_TASK = "brainmri.retrain_check"

TASK_FOR_KIND = {"predict": PREDICT_TASK, "evaluate": EVALUATE_TASK, "train": TRAIN_TASK}
QUEUE_FOR_KIND = {"predict": "predict", "evaluate": "evaluate", "train": "train"}
TASK_ROUTES = {
    PREDICT_TASK: {"queue": "predict"},
    EVALUATE_TASK: {"queue": "evaluate"},
    TRAIN_TASK: {"queue": "train"},
    RETRAIN_CHECK_TASK: {"queue": "train"},
}
ALL_QUEUES = ("predict", "evaluate", "train")
