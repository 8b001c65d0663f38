"""Label smoothing, MixUp and CutMix on whole batches.

Each mixed batch picks MixUp or CutMix (both really run; ``counts`` records which) and pairs
every sample with its neighbour in a rolled order, which works for any batch size >= 2, so an
odd last batch is mixed like any other (the original crashed on it). Randomness comes from the
seeded global torch generator, so a run is reproducible from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    targets = F.one_hot(labels, num_classes).float()
    return targets * (1.0 - smoothing) + smoothing / num_classes


@dataclass
class BatchMixer:
    num_classes: int
    label_smoothing: float = 0.0
    prob: float = 0.0
    mixup_alpha: float = 0.2
    cutmix_alpha: float = 1.0
    switch_prob: float = 0.5
    counts: dict[str, int] = field(default_factory=lambda: {"none": 0, "mixup": 0, "cutmix": 0})

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        targets = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
        batch = images.shape[0]
        if batch < 2 or self.prob <= 0 or self._uniform() >= self.prob:
            self.counts["none"] += 1
            return images, targets
        partner = torch.roll(torch.arange(batch), shifts=1)
        if self._uniform() < self.switch_prob:
            lam = self._beta(self.cutmix_alpha)
            images, lam = self._cutmix(images, partner, lam)
            self.counts["cutmix"] += 1
        else:
            lam = self._beta(self.mixup_alpha)
            images = lam * images + (1.0 - lam) * images[partner]
            self.counts["mixup"] += 1
        return images, lam * targets + (1.0 - lam) * targets[partner]

    @staticmethod
    def _uniform() -> float:
        return float(torch.rand(()))

    @staticmethod
    def _beta(alpha: float) -> float:
        return float(torch.distributions.Beta(alpha, alpha).sample())

    def _cutmix(
        self, images: torch.Tensor, partner: torch.Tensor, lam: float
    ) -> tuple[torch.Tensor, float]:
        height, width = images.shape[-2:]
        cut = (1.0 - lam) ** 0.5
        cut_h, cut_w = int(height * cut), int(width * cut)
        cy = int(torch.randint(height, ()))
        cx = int(torch.randint(width, ()))
        top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        mixed = images.clone()
        mixed[..., top:bottom, left:right] = images[partner][..., top:bottom, left:right]
        area = (bottom - top) * (right - left)
        return mixed, 1.0 - area / float(height * width)


def soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy against soft targets, optionally weighted per class.

    Class weights weigh each *sample* (by its target's mix of classes: a 70/30 MixUp of a
    glioma and a no-tumour slice counts 0.7 w_glioma + 0.3 w_no_tumor), and the loss is the
    weighted mean, as ``F.cross_entropy(weight=...)`` does for hard labels. Weighting each
    target entry instead moved the loss's minimum away from the target itself (towards
    p ~ target * w): with a rare class weighted up, label smoothing and mixing taught the
    model to over-predict it - a 0.7/0.3 mix was pushed to P(rare) 0.68.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1)
    per_sample = -(targets * log_probs).sum(dim=-1)
    if class_weights is None:
        return per_sample.mean()
    sample_weights = targets @ class_weights.to(targets.dtype)
    return (sample_weights * per_sample).sum() / sample_weights.sum()
