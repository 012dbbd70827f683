"""Data that needs no download: scikit-learn's digits, corpora generated in code, loaders."""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Digits:
    """The 8x8 handwritten digits, split once and for all: images (N, 1, 8, 8) in [0, 1]."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Digits:
    """scikit-learn's 1,797 digits (shipped with the package), with a fixed stratified split."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8), pixel values 0..16
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, bunch.target, test_size=test_fraction, random_state=seed, stratify=bunch.target
    )
    as_t = torch.from_numpy
    return Digits(as_t(x_tr), as_t(y_tr).long(), as_t(x_te), as_t(y_te).long())


def thicken(images: torch.Tensor) -> torch.Tensor:
    """Strokes one pixel thicker: each pixel of (B, C, H, W) becomes the maximum of itself and
    its right, lower and lower-right neighbours (a 2x2 dilation). An attribute known exactly."""
    padded = torch.nn.functional.pad(images, (0, 1, 0, 1))
    return torch.maximum(images, torch.nn.functional.max_pool2d(padded, 2, stride=1))


class TensorBatches:
    """Mini-batches of equally long tensors, sliced directly (far faster than a DataLoader
    over a TensorDataset, which indexes one row at a time). Seeded: the same order every run,
    a new order every epoch."""

    def __init__(self, *tensors: torch.Tensor, batch_size: int = 64, shuffle: bool = True, seed: int = 0) -> None:
        if not tensors:
            raise ValueError("make_loader needs at least one tensor")
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError(f"tensors differ in length: {[len(t) for t in tensors]}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.tensors, self.batch_size, self.shuffle, self.n = tensors, batch_size, shuffle, n
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        for start in range(0, self.n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield tuple(t[idx] for t in self.tensors)


def make_loader(*tensors: torch.Tensor, batch_size: int = 64, shuffle: bool = True, seed: int = 0) -> TensorBatches:
    """Seeded mini-batches over tensors that share their first dimension; yields tuples."""
    return TensorBatches(*tensors, batch_size=batch_size, shuffle=shuffle, seed=seed)


# --- A small world described in sentences -------------------------------------------------
# Each topic is a set of templates whose slots are filled from word lists. Words co-occur
# within a topic, so a model of co-occurrence can recover the topics. "fair" has two senses
# (a festival and justice) and "cold" two domains (weather and medicine), as in the slides.

TOPICS: dict[str, dict[str, list[str]]] = {
    "summer": {
        "templates": [
            "every {day} in {city} is {sunny} in summer",
            "the summer {day} was long and {sunny}",
            "in {city} the {sun} shines at midnight and the {day} is {sunny}",
            "we walked by the {sea} on a {sunny} {day}",
            "a {sunny} {day} in {city} with a {warm} {sea}",
        ],
        "day": ["day", "afternoon", "morning"],
        "sunny": ["sunny", "bright", "clear"],
        "sun": ["sun", "light"],
        "city": ["stockholm", "helsinki", "oslo"],
        "sea": ["sea", "beach", "lake"],
        "warm": ["warm", "calm"],
    },
    "winter": {
        "templates": [
            "the {winter} night was {cold} and full of {snow}",
            "in {winter} the roads are {cold} with {snow}",
            "a {cold} wind blew {snow} across the {field}",
            "we wore coats in the {cold} {winter} {snow}",
            "the {field} froze under {snow} on a {cold} night",
        ],
        "winter": ["winter", "january", "december"],
        "cold": ["cold", "freezing", "icy"],
        "snow": ["snow", "ice", "frost"],
        "field": ["field", "river", "road"],
    },
    "festival": {
        "templates": [
            "we went to the {fair} last {weekday} and rode the {ride}",
            "the county {fair} had {ride}s and {music}",
            "tickets for the {fair} sold out by {weekday}",
            "children loved the {ride} at the {fair} with loud {music}",
            "on {weekday} the {fair} opened with {music} and {food}",
        ],
        "fair": ["fair", "fair", "festival", "carnival"],
        "weekday": ["saturday", "sunday", "friday"],
        "ride": ["ride", "wheel", "carousel"],
        "music": ["music", "bands", "drums"],
        "food": ["candy", "popcorn"],
    },
    "justice": {
        "templates": [
            "the {judge} gave a {fair} {verdict} in {court}",
            "i do not believe your {attitude} is {fair}",
            "a {fair} {trial} needs an honest {judge}",
            "the {verdict} of the {court} was {fair} and {just}",
            "everyone deserves a {fair} {trial} and {just} rules",
        ],
        "fair": ["fair", "fair", "impartial"],
        "judge": ["judge", "jury", "referee"],
        "verdict": ["verdict", "ruling", "decision"],
        "court": ["court", "law"],
        "trial": ["trial", "hearing"],
        "attitude": ["attitude", "treatment"],
        "just": ["just", "honest"],
    },
    "pets": {
        "templates": [
            "the {pet} slept on the {place} all {time}",
            "my {pet} likes to {play} in the {place}",
            "a small {pet} will {play} with a {toy}",
            "we fed the {pet} before the {time} walk",
        ],
        "pet": ["cat", "dog", "puppy", "kitten"],
        "place": ["sofa", "garden", "carpet"],
        "time": ["evening", "night"],
        "play": ["play", "run", "jump"],
        "toy": ["ball", "string", "stick"],
    },
    "kitchen": {
        "templates": [
            "she baked {bread} and made {coffee} in the {kitchen}",
            "a cup of {coffee} with fresh {bread}",
            "the {kitchen} smelled of {bread} and {spice}",
            "add {spice} to the {soup} and serve it hot",
        ],
        "bread": ["bread", "cake", "pie"],
        "coffee": ["coffee", "tea", "cocoa"],
        "kitchen": ["kitchen", "oven", "bakery"],
        "spice": ["pepper", "salt", "garlic"],
        "soup": ["soup", "stew"],
    },
    "medicine": {
        "templates": [
            "the {patient} had a {cold} with {fever} and {cough}",
            "a {doctor} treated the {cold} with {medicine}",
            "symptoms of a {cold} include {fever} and {cough}",
            "the {virus} that causes a {cold} spreads in {clinic}s",
            "the {doctor} gave the {patient} {medicine} for the {cold}",
        ],
        "cold": ["cold", "cold", "flu", "infection"],
        "patient": ["patient", "child", "nurse"],
        "fever": ["fever", "headache"],
        "cough": ["cough", "sneezing"],
        "doctor": ["doctor", "physician"],
        "medicine": ["medicine", "rest", "fluids"],
        "virus": ["virus", "germ"],
        "clinic": ["clinic", "hospital", "school"],
    },
}

GENERAL_TOPICS = ("summer", "winter", "festival", "justice", "pets", "kitchen")


def generate_sentences(
    n: int, topics: dict[str, float] | tuple[str, ...] = GENERAL_TOPICS, seed: int = 0
) -> tuple[list[list[str]], list[str]]:
    """n tokenized sentences drawn from the templates of `topics`, and the topic of each.

    topics is a tuple of names (equally likely) or a dict name -> relative weight.
    Returns (sentences, topic_of_each_sentence); same seed, same corpus.
    """
    weights = dict(topics) if isinstance(topics, dict) else dict.fromkeys(topics, 1.0)
    unknown = set(weights) - set(TOPICS)
    if unknown:
        raise ValueError(f"unknown topics {sorted(unknown)}; choose from {sorted(TOPICS)}")
    if not weights or min(weights.values()) < 0 or sum(weights.values()) <= 0:
        raise ValueError(f"topic weights must be non-negative and not all zero, got {weights}")
    names, probs = list(weights), list(weights.values())
    rng = random.Random(seed)
    sentences, labels = [], []
    for _ in range(n):
        topic = rng.choices(names, probs)[0]
        spec = TOPICS[topic]
        template = rng.choice(spec["templates"])
        words = []
        for token in template.split():
            if token.startswith("{"):
                slot, _, suffix = token[1:].partition("}")
                words.append(rng.choice(spec[slot]) + suffix)
            else:
                words.append(token)
        sentences.append(words)
        labels.append(topic)
    return sentences, labels
