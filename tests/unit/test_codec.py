"""The keypoint codec: encode/decode round trips, one frame convention, eval == predict."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from posenfs_cli.data.affine import affine_points, get_affine_transform
from posenfs_cli.data.codec import HEATMAP_STRIDE, HeatmapCodec
from posenfs_cli.data.layouts import MPII, KeypointLayout
from posenfs_cli.evaluation.evaluator import META_KEYS, predict
from posenfs_cli.inference.predictor import Predictor
from posenfs_cli.vis.heatmaps import crop_keypoints, render_heatmaps, resample

CODEC = HeatmapCodec.for_input((256, 192), sigma=2.0)


def test_geometry_of_the_codec():
    assert CODEC.heatmap_size == (64, 48) and HEATMAP_STRIDE == 4
    np.testing.assert_array_equal(CODEC.stride, [4.0, 4.0])
    maps = torch.zeros(1, 3, 64, 48)
    assert HeatmapCodec.for_maps((256, 192), maps) == CODEC
    # heatmap pixel (x, y) is crop pixel stride * (x, y): no half-pixel terms either way
    np.testing.assert_array_equal(CODEC.heatmap_to_crop(np.array([[5.0, 3.0]])), [[20.0, 12.0]])
    np.testing.assert_array_equal(CODEC.crop_to_heatmap(np.array([[20.0, 12.0, 1.0]])), [[5, 3]])
    np.testing.assert_array_equal(CODEC.heatmap_to_crop_matrix(), [[4, 0, 0], [0, 4, 0]])
    with pytest.raises(ValueError, match="expects"):
        CODEC.decode(np.zeros((1, 3, 32, 24), np.float32))
    with pytest.raises(ValueError, match="positive"):
        HeatmapCodec((0, 192), (0, 48))


def test_encode_then_decode_returns_the_joint_within_quantisation():
    rng = np.random.default_rng(0)
    k = 40
    joints = rng.uniform([4, 4], [188, 252], (k, 2))  # crop pixels, away from the border
    target, weight = CODEC.encode(joints, np.ones(k))
    assert target.shape == (k, 64, 48) and (weight == 1).all()
    coords, scores = CODEC.decode(target[None])
    back = CODEC.heatmap_to_crop(coords[0])
    # the target peaks at the nearest heatmap pixel and is symmetric about it, so the decode
    # (argmax + quarter step toward the larger neighbour) lands exactly on that pixel
    np.testing.assert_array_equal(coords[0], np.floor(joints / 4 + 0.5))
    assert np.abs(back - joints).max() <= HEATMAP_STRIDE / 2
    np.testing.assert_array_equal(scores[0], 1.0)
    # joints on the heatmap grid come back exactly
    on_grid = np.array([[20.0, 12.0], [0.0, 0.0], [188.0, 252.0]])
    t, _ = CODEC.encode(on_grid, np.ones(3))
    np.testing.assert_array_equal(CODEC.heatmap_to_crop(CODEC.decode(t[None])[0][0]), on_grid)


def test_heatmap_and_crop_paths_to_the_image_agree():
    """crop -> image and crop -> heatmap -> image are the same inverse crop affine."""
    rng = np.random.default_rng(1)
    n, k = 4, 16
    center = rng.uniform(100, 400, (n, 2))
    scale = rng.uniform(0.8, 2.5, (n, 2))
    rotation = rng.uniform(-40, 40, n)
    image_pts = center[:, None] + rng.uniform(-120, 120, (n, k, 2))
    crop = np.stack(
        [
            affine_points(
                image_pts[i], get_affine_transform(center[i], scale[i], rotation[i], (192, 256))
            )
            for i in range(n)
        ]
    )
    via_crop = CODEC.to_image(crop, center, scale, rotation, grid="crop")
    via_heatmap = CODEC.to_image(CODEC.crop_to_heatmap(crop), center, scale, rotation)
    np.testing.assert_allclose(via_crop, image_pts, atol=1e-9)
    np.testing.assert_allclose(via_heatmap, image_pts, atol=1e-9)


class ConvAtQuarter(nn.Module):
    """A fixed random conv pooled to 1/4: content-dependent maps, nothing to fold."""

    def __init__(self, num_joints: int):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, num_joints, 5, padding=2), nn.AvgPool2d(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize("flip", [False, True])
def test_evaluator_and_predictor_give_the_same_keypoints_on_the_same_crop(flip):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (180, 240, 3), dtype=np.uint8)
    boxes = np.array([[10.0, 20.0, 90.0, 170.0], [120.0, 30.0, 230.0, 110.0]])
    model = ConvAtQuarter(MPII.num_joints).eval()
    pred = Predictor(model, MPII, (64, 48), flip=flip, channels_last=False)
    inst = pred.predict_boxes(image, boxes, np.ones(2))

    batch = pred.crop(image, boxes)
    x = (torch.from_numpy(batch.crops).permute(0, 3, 1, 2).float() - pred._mean) / pred._std
    m = len(boxes)
    meta = {key: torch.zeros(m) for key in META_KEYS}
    meta.update(
        index=torch.arange(m),
        joints=torch.zeros(m, MPII.num_joints, 3),
        headbox=torch.zeros(m, 4),
        center=torch.from_numpy(batch.centers),
        scale=torch.from_numpy(batch.scales),
        valid=torch.ones(m, dtype=torch.bool),
    )
    preds = predict(model, [(x, None, None, meta)], torch.device("cpu"), MPII, flip=flip)
    np.testing.assert_array_equal(preds.coords, np.stack([i.keypoints for i in inst]))
    np.testing.assert_array_equal(preds.scores, np.stack([i.keypoint_scores for i in inst]))


def one_hot_maps(x: int, y: int, h: int = 16, w: int = 12) -> np.ndarray:
    maps = np.zeros((1, h, w), np.float32)
    maps[0, y, x] = 1.0
    return maps


def test_heatmap_drawing_puts_joints_on_the_codec_pixel():
    """A peak on heatmap pixel (5, 10) of a 64x48 crop is crop pixel (20, 40), not (21.5, 41.5).

    The old drawing used (x + 0.5) * stride - 0.5, 1.5 px right/down of what eval/predict use.
    """
    maps = one_hot_maps(5, 10)
    keypoints, scores = crop_keypoints(maps, (64, 48))
    np.testing.assert_array_equal(keypoints, [[20.0, 40.0]])
    assert scores[0] == 1.0
    # the upsampled map peaks on the same crop pixel, symmetric around it
    codec = HeatmapCodec.for_maps((64, 48), maps)
    up = resample(maps[0], codec.heatmap_to_crop_matrix(), (48, 64))
    assert np.unravel_index(np.argmax(up), up.shape) == (40, 20)
    assert up[40, 19] == pytest.approx(up[40, 21]) and up[39, 20] == pytest.approx(up[41, 20])


def test_rendered_joint_is_centred_on_the_decoded_pixel():
    layout = KeypointLayout("one", ("mid",), (), ())
    maps = one_hot_maps(5, 10)
    crop = np.zeros((64, 48, 3), np.uint8)
    keypoints, scores = crop_keypoints(maps, crop.shape[:2])
    grid = render_heatmaps(crop, maps, [], layout, keypoints, scores, kpt_thr=0.3, tile=128)
    pad, scale = 2, 2.0  # make_grid padding; tile 128 / crop 64
    tile = grid[pad : pad + 128, pad : pad + 96].astype(np.float64).sum(axis=2)
    tile[:24] = 0  # the label strip
    ys, xs = np.nonzero(tile)
    w = tile[ys, xs]
    centroid = np.array([(xs * w).sum(), (ys * w).sum()]) / w.sum()
    np.testing.assert_allclose(centroid, [20.0 * scale, 40.0 * scale], atol=0.2)
