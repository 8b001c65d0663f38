"""How a slice is framed before the letterbox: the one vocabulary that preprocessing, training,
the API schema and the CLIs share.

Kept apart from :mod:`brainmri.preprocess` because that module needs torch, and the remote CLI
(``brainmri submit``) and the training recipes must import without it.
"""

from __future__ import annotations

from typing import Literal, get_args

#: ``none``: the whole slice; ``head``: cropped to the head's box first (``preprocess.head_box``).
CropMode = Literal["none", "head"]
CROP_MODES: tuple[str, ...] = get_args(CropMode)
