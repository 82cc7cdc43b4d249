"""Synthetic people: procedurally rendered, annotated pose images.

Each image is a pure function of (seed, split, index): a ``numpy`` Generator seeded with that
triple draws a *scene* (people, background, clutter, occluders) and :func:`render_scene` draws it
with OpenCV, so the same seed gives bit-identical images and annotations.

The person model is a 2D kinematic skeleton (pelvis root; torso lean; head tilt; shoulder,
elbow, hip and knee angles; per-person limb lengths, thickness and body width) with
superset joints that cover MPII's 16 and COCO's 17 (face points included). Limbs are thick
capsules, the torso a shirt quad with a pants band over the hips, hands and shoes mark wrists
and ankles, and colour changes mark elbows and knees.

Left/right is decidable from appearance in a way that *survives horizontal flips* (flip
augmentation and the flip test mirror the image and swap labels, so a cue like "left limbs are
blue" would be contradicted by half of the training data):

- facing: 80% of people face the camera (a face with eyes, nose and a collar mark: their left
  is on the image right), 20% turn their back (hair-covered head, no collar);
- chirality: every limb carries a thin stripe along one edge, on the side given by
  ``±perp(proximal -> distal)`` with the sign set by the anatomical side. A mirror reverses the
  sign and the label swap reverses it back, so the cue stays consistent, like real human
  chirality.

Clutter (random shapes, a few limb-like bars, texture and sensor noise, blur, exposure) and
foreground occluders on a minority of people keep the task from being trivial; COCO-style
images hold several people that may overlap and be cut by the border. Visibility flags come
from exact painter's-order geometry: a joint is *visible* (2) when the topmost shape covering it
belongs to its own body part, *occluded* (1) when something else is drawn over it, and
*unlabelled* (0) outside the image (and, for people seen from the back, nose and eyes).

Joints are quantised to 1/16 px (what OpenCV's ``shift=4`` draws), so 1-based MPII files
round-trip exactly.

The package splits the generator by stage: :mod:`.core` (joints, parts, shapes, splits),
:mod:`.person` (the person model), :mod:`.occlusion`, :mod:`.scene` (sampling a scene),
:mod:`.render`, :mod:`.annotations` (MPII / COCO records) and :mod:`.writers` (files on disk).
"""

from posenfs_cli.data.synthetic.annotations import (
    coco_categories,
    coco_entries,
    layout_joints,
    mpii_records,
    split_annotations,
)
from posenfs_cli.data.synthetic.core import (
    OWNER_TABLE,
    PARTS,
    SUPER_NAMES,
    Shape,
    SynthPerson,
    SynthScene,
    SynthSplit,
    hsv_to_bgr,
)
from posenfs_cli.data.synthetic.occlusion import top_shape
from posenfs_cli.data.synthetic.render import SyntheticImageSource, generate_image, render_scene
from posenfs_cli.data.synthetic.scene import generate_scene
from posenfs_cli.data.synthetic.writers import (
    SynthPlan,
    WriteSummary,
    plan_synthetic,
    write_gt_mat,
    write_synthetic,
)

__all__ = [
    "OWNER_TABLE",
    "PARTS",
    "SUPER_NAMES",
    "Shape",
    "SynthPerson",
    "SynthScene",
    "SynthSplit",
    "SyntheticImageSource",
    "SynthPlan",
    "WriteSummary",
    "coco_categories",
    "coco_entries",
    "generate_image",
    "generate_scene",
    "hsv_to_bgr",
    "layout_joints",
    "mpii_records",
    "render_scene",
    "split_annotations",
    "top_shape",
    "write_gt_mat",
    "plan_synthetic",
    "write_synthetic",
]
