"""GRAVO's ACC maps (Im2Wav's `Data/meta.py`): label sets over a classifier's AudioSet labels, the general
classes, and VGGSound labels scored through their ImageHear class."""

import pytest
import torch

from projects.gravo.classes import (
    AUDIOSET_GENERAL_CLASSES,
    IMAGEHEAR_TO_AUDIOSET,
    IMAGEHEAR_TO_VGGSOUND,
    general_class_indices,
    imagehear_label_sets,
    label_sets_for,
    read_audioset_labels,
)
from shared.metrics import top_class_hits
from shared.runs import UserError


def test_the_maps_cover_the_30_imagehear_classes_and_the_33_general_classes():
    assert len(IMAGEHEAR_TO_AUDIOSET) == len(IMAGEHEAR_TO_VGGSOUND) == 30
    assert set(IMAGEHEAR_TO_AUDIOSET) == set(IMAGEHEAR_TO_VGGSOUND)
    assert len(AUDIOSET_GENERAL_CLASSES) == 33
    assert not AUDIOSET_GENERAL_CLASSES & {n for names in IMAGEHEAR_TO_AUDIOSET.values() for n in names}
    assert set(IMAGEHEAR_TO_AUDIOSET["Waterfall"]) < set(IMAGEHEAR_TO_AUDIOSET["Rain"])


def audioset_labels() -> list[str]:
    """Every name the maps use, the general classes, and two unrelated classes, in a shuffled order."""
    names = {n for names in IMAGEHEAR_TO_AUDIOSET.values() for n in names} | AUDIOSET_GENERAL_CLASSES
    names = sorted(names | {"Zither", "Silence"})
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(0))
    return [names[i] for i in order]


def test_label_sets_zeroing_and_vggsound_routing(tmp_path):
    labels = audioset_labels()
    csv = tmp_path / "class_labels_indices.csv"
    csv.write_text("index,mid,display_name\n" + "".join(f'{i},/m/{i},"{n}"\n' for i, n in enumerate(labels)))
    assert read_audioset_labels(csv) == labels
    sets = imagehear_label_sets(labels)
    assert {labels[i] for i in sets["Dog"].nonzero()[:, 0]} == set(IMAGEHEAR_TO_AUDIOSET["Dog"])
    general = general_class_indices(labels)
    assert {labels[i] for i in general} == AUDIOSET_GENERAL_CLASSES
    # a dog clip whose classifier says "Animal" first and "Bark" second: a hit only once general classes are zeroed
    logits = torch.full((3, len(labels)), -10.0)
    logits[:, labels.index("Animal")] = 5.0
    logits[:, labels.index("Bark")] = 4.0
    targets = label_sets_for(["Dog", "dog barking", "playing cello"], labels)
    assert targets[2].sum() == 0  # a VGGSound class with no ImageHear class: left out of ACC
    assert torch.equal(targets[0], targets[1])
    hits, scored = top_class_hits(logits, targets)
    assert hits.tolist() == [False, False, False] and scored.tolist() == [True, True, False]
    hits, _ = top_class_hits(logits, targets, torch.tensor(general))
    assert hits.tolist()[:2] == [True, True]


def test_missing_names_and_bad_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not among the classifier's"):
        imagehear_label_sets(["Dog", "Bark"])
    bad = tmp_path / "labels.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="labels.csv"):
        read_audioset_labels(bad)
