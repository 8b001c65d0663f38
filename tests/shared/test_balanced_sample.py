"""`limit` / `img_limit` sampling of evaluation inputs (`brainmri.sources.balanced_sample`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from brainmri.config import Settings
from brainmri.phantom import write_phantom_dataset
from brainmri.sources import balanced_sample, list_source_items, resolve_source


def test_files_outside_class_folders_never_take_a_class_share(tmp_path: Path) -> None:
    """The real data folder has SOURCE.md beside its class folders; a 40-image sample of it
    held 39 scans and SOURCE.md (reported as a failed image), and `img_limit` 12 gave the
    classes 3/3/3/2. Loose files now come only after every class is used up."""
    root = tmp_path / "data"
    write_phantom_dataset(root, per_class=5, size=48, seed=1)
    (root / "SOURCE.md").write_text("where the data came from")
    (root / "README.txt").write_text("notes")
    settings = Settings(data_dir=tmp_path / "var", allowed_roots=str(root))
    items = list_source_items(resolve_source(str(root), settings), settings)
    assert Counter(item.true_class for item in items)[None] == 2

    for seed in range(5):
        sample = balanced_sample(items, 12, seed=seed)
        assert Counter(item.true_class for item in sample) == {
            "no_tumor": 3, "glioma": 3, "meningioma": 3, "pituitary": 3,
        }  # fmt: skip
    taken = balanced_sample(items, 21, seed=0)  # every scan, then one loose file
    assert Counter(item.true_class for item in taken)[None] == 1
    assert len(taken) == 21


def test_a_folder_of_unlabelled_scans_is_still_sampled(tmp_path: Path) -> None:
    root = tmp_path / "scans"
    write_phantom_dataset(root, per_class=3, size=48, seed=2)
    loose = tmp_path / "loose"
    loose.mkdir()
    for path in root.rglob("*.png"):
        (loose / f"{path.parent.name}-{path.name}").write_bytes(path.read_bytes())
    settings = Settings(data_dir=tmp_path / "var", allowed_roots=str(loose))
    items = list_source_items(resolve_source(str(loose), settings), settings)
    assert {item.true_class for item in items} == {None}
    assert len(balanced_sample(items, 5, seed=0)) == 5
