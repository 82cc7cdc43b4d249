"""Facts of the authors' file and config formats, written down as data.

Their state dict: ``backbone.*`` (the backbone module), ``reduce.<part>.<level>`` (1x1 convs from
the backbone pyramid to the CNF channels, one list per part in forward order), and per part
``<part>.alphas`` ``[edge rows, ops]``, ``<part>.betas`` ``[cells, 3]``, an unused ``<part>.stem``,
``<part>.cell_<layer>_<scale>`` (``propress_list.<slot>`` scale transforms,
``cell_arch.<edge>.ops.<column>`` mixed-op edges, ``channel_keep`` 1x1 output conv) and
``<part>.final_layer.1`` (the head conv). Their parts and their output channels use the joint
names and orders below; their MPII output follows a COCO-like order, not MPII's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from posenfs_cli.errors import PosenfsError, existing_file

# Their op names (α column order comes from the config) -> ours.
OP_NAMES = {
    "Zero": "zero",
    "skip_connect": "skip",
    "Sep_Conv_3x3": "sep_conv_3x3",
    "Atr_Conv_3x3": "dil_conv_3x3",
    "avg_pool_3x3": "avg_pool_3x3",
    "max_pool_3x3": "max_pool_3x3",
}
THEIR_OP_NAMES = {v: k for k, v in OP_NAMES.items()}

# The paper's op order for a given number of α columns (used when no config says otherwise).
PAPER_OPS = {
    3: ["skip", "sep_conv_3x3", "dil_conv_3x3"],
    4: ["zero", "skip", "sep_conv_3x3", "dil_conv_3x3"],
    6: ["zero", "skip", "sep_conv_3x3", "dil_conv_3x3", "avg_pool_3x3", "max_pool_3x3"],
}

# Their joint names of the limbs, in the order both datasets list them.
_LIMBS = [
    "l_shoulder",
    "r_shoulder",
    "l_elbow",
    "r_elbow",
    "l_wrist",
    "r_wrist",
    "l_hip",
    "r_hip",
    "l_knee",
    "r_knee",
    "l_ankle",
    "r_ankle",
]

# Their output channel order per dataset, in their joint names.
OUTPUT_ORDER = {
    "mpii": ["head_top", "upper_neck", "throax", *_LIMBS, "pelvis"],
    "coco": ["nose", "l_eye", "r_eye", "l_ear", "r_ear", *_LIMBS],
}


def our_joint_name(name: str) -> str:
    """Their joint name -> our layout's name (``l_knee`` -> ``left_knee``, ``throax``...)."""
    if name == "throax":
        return "thorax"
    if name.startswith("l_"):
        return "left_" + name[2:]
    if name.startswith("r_"):
        return "right_" + name[2:]
    return name


def _parts_table() -> dict[tuple[str, int], dict[str, list[str]]]:
    """(dataset, P) -> {their part name: their joint names, in their channel order}."""
    sho, elb, wri = ["l_shoulder", "r_shoulder"], ["l_elbow", "r_elbow"], ["l_wrist", "r_wrist"]
    kne, ank = ["l_knee", "r_knee"], ["l_ankle", "r_ankle"]
    head = {
        "mpii": ["head_top", "upper_neck", "throax"],
        "coco": ["nose", "l_eye", "r_eye", "l_ear", "r_ear"],
    }
    table: dict[tuple[str, int], dict[str, list[str]]] = {}
    for ds in ("mpii", "coco"):
        mp = ds == "mpii"
        table[(ds, 1)] = {"whole_body": list(OUTPUT_ORDER[ds])}
        table[(ds, 3)] = {
            "upper_limb_part": [sho[0], sho[1], elb[0], elb[1], wri[0], wri[1]],
            "head_part": head[ds],
            "lower_limb_part": ["l_hip", "r_hip", *kne, *ank] + (["pelvis"] if mp else []),
        }
        table[(ds, 5)] = {
            "left_arm_part": ["l_elbow", "l_wrist"],
            "right_arm_part": ["r_elbow", "r_wrist"],
            "legs_part": [*kne, *ank],
            "head_shoulder_part": head[ds] + sho,
            "hips_part": (["pelvis"] if mp else []) + ["l_hip", "r_hip"],
        }
        table[(ds, 8)] = {
            "left_upper_arm_part": ["l_shoulder", "l_elbow"],
            "right_upper_arm_part": ["r_shoulder", "r_elbow"],
            "left_lower_arm_part": ["l_elbow", "l_wrist"],
            "right_lower_arm_part": ["r_elbow", "r_wrist"],
            "left_lower_leg_part": ["l_knee", "l_ankle"],
            "right_lower_leg_part": ["r_knee", "r_ankle"],
            "head_shoulder_part": head[ds] + sho,
            "upper_legs_part": (["l_hip", "pelvis", "r_hip"] if mp else ["l_hip", "r_hip"]) + kne,
        }
    return table


PARTS = _parts_table()


def part_joints(dataset: str, parts: list[str]) -> dict[str, list[str]] | None:
    """Their joint lists for these part names, or None when no (dataset, P) table has them."""
    table = PARTS.get((dataset, len(parts)))
    if table is None or set(table) != set(parts):
        return None
    return {p: table[p] for p in parts}


# --- their YAML config ---------------------------------------------------------------------


def _backbone_name(name: str) -> str:
    low = name.lower()
    if "mobilenet" in low:
        return "mobilenet_v2"
    if "hrnet" in low:
        return "hrnet_w32"
    if "resnet" in low:
        return "resnet50"
    return name


def read_config(path: str | Path) -> dict[str, Any]:
    """The facts an authors' YAML config states about the model, in our terms.

    Keys: backbone, dataset, keypoints, input_size [h, w], parts, hidden, channels,
    input_nodes, vector_dim, ops (our names, α column order), their_ops, layers, cut.
    Only keys the file states are present.
    """
    p = existing_file(path, "config not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PosenfsError(f"{p} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("subnetwork_config"), dict):
        raise PosenfsError(
            f"{p} is not an authors' PoseNFS config (no model.subnetwork_config section)"
        )
    sub = model["subnetwork_config"]
    cell = sub.get("cell_config") or {}
    if not isinstance(cell, dict):
        raise PosenfsError(f"{p}: model.subnetwork_config.cell_config is not a mapping")
    out: dict[str, Any] = {"path": str(p)}

    def take(key: str, src: dict, name: str, kind: type) -> None:
        if name in src and src[name] is not None:
            value = src[name]
            if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
                raise PosenfsError(f"{p}: {name} should be a {kind.__name__}, got {value!r}")
            out[key] = value

    if "backbone_net_name" in model:
        out["backbone"] = _backbone_name(str(model["backbone_net_name"]))
    take("dataset", sub, "dataset_name", str)
    if "dataset" not in out:
        take("dataset", model, "dataset_name", str)
    take("keypoints", model, "keypoints_num", int)
    size = model.get("input_size")
    if isinstance(size, dict) and isinstance(size.get("h"), int) and isinstance(size.get("w"), int):
        out["input_size"] = [size["h"], size["w"]]
    take("parts", sub, "parts_num", int)
    take("hidden", cell, "hidden_states_num", int)
    take("channels", cell, "factor", int)
    take("input_nodes", cell, "input_nodes_num", int)
    take("layers", cell, "depth", int)
    take("cut", cell, "cut_layers_num", int)
    if "vector_in_pixel" in cell:
        vip = bool(cell["vector_in_pixel"])
        out["vector_dim"] = int(cell.get("vector_dim", 1)) if vip else 1
    if "operators" in cell:
        ops = cell["operators"]
        if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
            raise PosenfsError(f"{p}: cell_config.operators should be a list of op names")
        unknown = [o for o in ops if o not in OP_NAMES]
        if unknown:
            raise PosenfsError(
                f"{p}: unknown operator {unknown[0]!r} (known: {', '.join(OP_NAMES)})"
            )
        out["their_ops"] = list(ops)
        out["ops"] = [OP_NAMES[o] for o in ops]
    if "dataset" in out and out["dataset"] not in OUTPUT_ORDER:
        raise PosenfsError(f"{p}: dataset_name {out['dataset']!r} is not mpii or coco")
    return out
