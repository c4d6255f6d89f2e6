"""The class maps of GRAVO's ACC (Interspeech 2023, sec. 3.3), which are Im2Wav's (arXiv:2211.03089, sec. 4;
`RoySheffer/im2wav`, `Data/meta.py`: `IMAGEHEAR2AudioSet`, `IMAGEHEAR2VGGSound`, `AudioSet_general_classes`).

ACC takes the AudioSet classifier's (PaSST's) top class after zeroing the probabilities of the 33 classes Im2Wav
calls too general, and counts a hit when it is one of the AudioSet classes of the condition's ImageHear
class. On VGGSound, ACC is measured only on clips of the VGGSound classes that map to an ImageHear class;
such a clip is scored against that ImageHear class's AudioSet set. Repeated names in the official lists
(e.g. "Organ" twice for Piano) are kept once. The AudioSet names are those of AudioSet's
`class_labels_indices.csv` (`index,mid,display_name`), the order of PaSST's 527 outputs.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from shared.runs import UserError

_WATER = (
    "Waterfall", "Rain", "Raindrop", "Rain on surface", "Waves, surf", "Water", "Gush", "Gurgling", "Patter",
    "Slosh",
)  # fmt: skip

IMAGEHEAR_TO_AUDIOSET: dict[str, tuple[str, ...]] = {
    "Accordion": ("Accordion",),
    "Bass": ("Bass guitar",),
    "Guitar": ("Guitar", "Acoustic guitar", "Steel guitar, slide guitar"),
    "Bongo": ("Drum", "Percussion", "Tabla"),
    "Flute": ("Flute",),
    "Drums": (
        "Drum",
        "Drum machine",
        "Drum kit",
        "Snare drum",
        "Rimshot",
        "Drum roll",
        "Bass drum",
        "Percussion",
        "Timpani",
        "Cymbal",
        "Hi-hat",
    ),
    "Trumpet": ("Trumpet", "Trombone", "Brass instrument", "French horn"),
    "Harmonica": ("Harmonica",),
    "Piano": ("Piano", "Organ", "Hammond organ", "Electronic organ", "Electric piano", "Keyboard (musical)"),
    "Saxophone": ("Saxophone", "Brass instrument"),
    "Bells": ("Bell", "Church bell", "Jingle bell"),
    "Car": ("Car", "Vehicle"),
    "Police": ("Siren", "Emergency vehicle", "Ambulance (siren)", "Police car (siren)"),
    "Motorcycle": ("Motorcycle", "Vehicle"),
    "Train": ("Train", "Steam whistle"),
    "Gun": (
        "Gunshot, gunfire",
        "Cap gun",
        "Explosion",
        "Machine gun",
        "Burst, pop",
        "Firecracker",
        "Thump, thud",
        "Whack, thwack",
    ),
    "People": ("Speech", "Male speech, man speaking", "Female speech, woman speaking", "Conversation"),
    "Waterfall": _WATER,
    "Rain": (*_WATER, "Thunderstorm"),
    "Cat": ("Cat", "Meow", "Hiss", "Caterwaul", "Purr"),
    "Bird": (
        "Bird",
        "Bird vocalization, bird call, bird song",
        "Chirp, tweet",
        "Bird flight, flapping wings",
        "Pigeon, dove",
        "Squawk",
    ),
    "Sheep": ("Sheep", "Bleat"),
    "Horse": ("Horse", "Clip-clop", "Neigh, whinny"),
    "Lion": ("Roaring cats (lions, tigers)", "Roar"),
    "Chicken": ("Chicken, rooster", "Crowing, cock-a-doodle-doo", "Turkey"),
    "Cow": ("Cattle, bovinae", "Moo", "Cowbell"),
    "Cricket": ("Cricket", "Insect"),
    "Dog": ("Dog", "Bark", "Yip", "Howl", "Bow-wow", "Growling", "Whimper (dog)"),
    "Duck": ("Duck", "Goose", "Quack"),
    "Frog": ("Frog", "Croak"),
}

IMAGEHEAR_TO_VGGSOUND: dict[str, tuple[str, ...]] = {
    "Accordion": ("playing accordion",),
    "Bass": ("playing bass guitar",),
    "Guitar": ("playing acoustic guitar",),
    "Bongo": ("playing bongo",),
    "Flute": ("playing flute",),
    "Drums": ("playing drum kit", "playing snare drum"),
    "Trumpet": ("playing trumpet",),
    "Harmonica": ("playing harmonica",),
    "Piano": ("playing piano",),
    "Saxophone": ("playing saxophone",),
    "Bells": ("church bell ringing",),
    "Car": (
        "car engine knocking",
        "car engine idling",
        "car engine starting",
        "race car, auto racing",
        "car passing by",
    ),
    "Police": ("police car (siren)",),
    "Motorcycle": ("driving motorcycle",),
    "Train": ("railroad car, train wagon", "train whistling", "train horning", "train wheels squealing"),
    "Gun": ("cap gun shooting", "machine gun shooting"),
    "People": ("female speech, woman speaking", "male speech, man speaking"),
    "Waterfall": ("waterfall burbling",),
    "Rain": ("raining",),
    "Cat": ("cat growling", "cat meowing", "cat purring", "cat caterwauling", "cat hissing"),
    "Bird": ("bird squawking", "mynah bird singing", "bird chirping, tweeting"),
    "Sheep": ("sheep bleating",),
    "Horse": ("horse clip-clop", "horse neighing"),
    "Lion": ("lions growling", "lions roaring"),
    "Chicken": ("chicken crowing", "chicken clucking"),
    "Cow": ("cattle, bovinae cowbell", "cow lowing", "cattle mooing"),
    "Cricket": ("cricket chirping",),
    "Dog": ("dog growling", "dog whimpering", "dog bow-wow", "dog barking", "dog howling", "dog baying"),
    "Duck": ("duck quacking",),
    "Frog": ("frog croaking",),
}

AUDIOSET_GENERAL_CLASSES: frozenset[str] = frozenset(
    {
        "Animal", "Music", "Musical instrument", "Livestock, farm animals, working animals",
        "Domestic animals, pets", "Funny music", "Music of Latin America", "Music of Bollywood", "Rock music",
        "Traditional music", "Swing music", "Middle Eastern music", "Music of Africa", "Ambient music",
        "Electronic music", "Wild animals", "Classical music", "Theme music", "Sound effect",
        "Outside, rural or natural", "Scary music", "Effects unit", "Rock and roll", "Jazz", "Disco",
        "Heavy metal", "Punk rock", "Vocal music", "Techno", "Video game music", "Soundtrack music",
        "Salsa music", "Folk music",
    }
)  # fmt: skip

VGGSOUND_TO_IMAGEHEAR: dict[str, str] = {
    vggsound: imagehear for imagehear, labels in IMAGEHEAR_TO_VGGSOUND.items() for vggsound in labels
}


def read_audioset_labels(path: str | Path) -> list[str]:
    """AudioSet's `class_labels_indices.csv` (header `index,mid,display_name`) -> the display names by index."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as error:
        raise UserError(f"{path}: cannot read the AudioSet label list ({error})") from error
    if not rows or {"index", "display_name"} - set(rows[0]):
        raise UserError(f"{path}: expected AudioSet's class_labels_indices.csv (index,mid,display_name)")
    names = {int(row["index"]): row["display_name"] for row in rows}
    if sorted(names) != list(range(len(names))):
        raise UserError(f"{path}: the indices are not 0..{len(names) - 1}")
    return [names[i] for i in range(len(names))]


def _indices(names: list[str], wanted: set[str] | frozenset[str] | tuple[str, ...]) -> list[int]:
    position = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(wanted) - set(position))
    if unknown:
        raise ValueError(f"AudioSet classes {unknown} are not among the classifier's {len(names)} labels")
    return sorted(position[name] for name in set(wanted))


def general_class_indices(audioset_labels: list[str]) -> list[int]:
    """Indices of Im2Wav's 33 general AudioSet classes among the classifier's labels (ACC zeroes them)."""
    return _indices(audioset_labels, AUDIOSET_GENERAL_CLASSES)


def imagehear_label_sets(audioset_labels: list[str]) -> dict[str, torch.Tensor]:
    """ImageHear class -> its AudioSet label set as a bool vector over the classifier's labels."""
    sets = {}
    for imagehear, names in IMAGEHEAR_TO_AUDIOSET.items():
        row = torch.zeros(len(audioset_labels), dtype=torch.bool)
        row[_indices(audioset_labels, names)] = True
        sets[imagehear] = row
    return sets


def label_sets_for(conditions: list[str], audioset_labels: list[str]) -> torch.Tensor:
    """[N, C] label sets for ACC of clips conditioned on `conditions`, each an ImageHear class or a VGGSound
    label; a VGGSound label with no ImageHear class gets an empty set (the clip is left out of ACC)."""
    sets = imagehear_label_sets(audioset_labels)
    empty = torch.zeros(len(audioset_labels), dtype=torch.bool)
    rows = []
    for condition in conditions:
        imagehear = condition if condition in sets else VGGSOUND_TO_IMAGEHEAR.get(condition)
        rows.append(sets[imagehear] if imagehear is not None else empty)
    return torch.stack(rows) if rows else empty[None][:0]
