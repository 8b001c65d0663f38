"""Canonical class names and the folder-name aliases that map to them.

Class *order* in a trained model always comes from its bundle metadata; :data:`CLASS_NAMES` is
only the order new models are trained with (the original service's order).
"""

from __future__ import annotations

import re

NO_TUMOR = "no_tumor"
CLASS_NAMES: tuple[str, ...] = (NO_TUMOR, "glioma", "meningioma", "pituitary")

# Keys are folder names lower-cased with separators removed.
_ALIASES: dict[str, str] = {
    "notumor": NO_TUMOR,
    "notumour": NO_TUMOR,
    "normal": NO_TUMOR,
    "glioma": "glioma",
    "gliomatumor": "glioma",
    "gliomatumour": "glioma",
    "meningioma": "meningioma",
    "meningiomatumor": "meningioma",
    "meningiomatumour": "meningioma",
    "meningiomatomor": "meningioma",  # misspelt folder name in a public copy of the data
    "pituitary": "pituitary",
    "pituitarytumor": "pituitary",
    "pituitarytumour": "pituitary",
}
_SEPARATORS = re.compile(r"[\s_\-.]+")


def canonical_class(name: str) -> str | None:
    """Map a folder name such as ``Glioma_Tumor`` or ``notumor`` to a class name, else None."""
    return _ALIASES.get(_SEPARATORS.sub("", name.strip().lower()))


def binary_label(class_name: str) -> int:
    """1 for any tumor class, 0 for ``no_tumor``."""
    return 0 if class_name == NO_TUMOR else 1
