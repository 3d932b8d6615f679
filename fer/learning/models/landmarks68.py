"""face-api's FaceLandmark68Net in torch: 68 facial landmarks per face box.

The net is face-api's ``FaceFeatureExtractor`` (the same dense blocks as
:class:`~fer.learning.models.faceexpr.FaceExpressionNet`) with a 256 → 136 linear layer: (x, y)
of 68 points in units of the padded 112×112 input. Its weights (``landmarks68`` in the
pretrained catalog, fetched by ``fer weights``) have the same tensor names as the expression
model's, so the same TensorFlow.js reader loads them. Input preparation and the mapping back to
image pixels are face-api's, in :mod:`fer.faces.landmarks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fer.faces.landmarks import (
    N_POINTS,
    Box,
    landmark_input,
    landmarks_from_output,
)
from fer.learning.models.faceexpr import MEAN_RGB, FaceExpressionNet, load_tfjs_weights

NAME = "landmarks68"


def landmark_net(manifest: Path | None = None) -> FaceExpressionNet:
    """The net with face-api's weights (default: the verified ``landmarks68`` files), eval mode.

    Raises:
        ModelError: weights missing or corrupt (run ``fer weights``), or not fitting the net.
    """
    from fer.learning.models.pretrained import weights_path

    net = FaceExpressionNet(2 * N_POINTS)
    load_tfjs_weights(net, manifest if manifest is not None else weights_path(NAME))
    return net.eval()


class FaceLandmarker:
    """:class:`fer.faces.landmarks.Landmarker` running face-api's net on CPU in torch.

    All faces of an image go through the net as one batch; ``threads`` (e.g. 1, as the
    classifiers of ``fer predict`` use) sets torch's intra-op threads during each call.
    """

    name = NAME

    def __init__(
        self, net: FaceExpressionNet | None = None, *, threads: int | None = None
    ) -> None:
        self.net = net if net is not None else landmark_net()
        self.threads = threads
        self._mean = torch.tensor(MEAN_RGB, dtype=torch.float32).view(1, 3, 1, 1)

    def outputs(self, inputs: np.ndarray) -> np.ndarray:
        """``(N, 112, 112, 3)`` float32 0–255 inputs → the net's ``(N, 136)`` outputs."""
        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).permute(0, 3, 1, 2)
        previous = torch.get_num_threads()
        if self.threads and self.threads != previous:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                return self.net((x - self._mean) / 255.0).numpy()
        finally:
            if torch.get_num_threads() != previous:
                torch.set_num_threads(previous)

    def landmarks(self, image_rgb: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """``(N, 68, 2)`` points ``(x, y)`` in image pixels for each box.

        Raises:
            ValueError: a box lies outside the image.
        """
        return self.landmarks_many([(image_rgb, boxes)])[0]

    def landmarks_many(
        self, images: Sequence[tuple[np.ndarray, Sequence[Box]]]
    ) -> list[np.ndarray]:
        """:meth:`landmarks` of several ``(image_rgb, boxes)``: every face of every image goes
        through the net as one batch (a chunk of video frames: one call instead of one a frame).

        Raises:
            ValueError: a box lies outside its image.
        """
        prepared = [
            (i, box, *landmark_input(image_rgb, box))
            for i, (image_rgb, boxes) in enumerate(images)
            for box in boxes
        ]
        out = self.outputs(np.stack([inp for _, _, inp, _ in prepared])) if prepared else []
        points: list[list[np.ndarray]] = [[] for _ in images]
        for o, (i, box, _, window) in zip(out, prepared, strict=True):
            points[i].append(landmarks_from_output(o, window, box))
        return [np.stack(p) if p else np.zeros((0, N_POINTS, 2)) for p in points]
