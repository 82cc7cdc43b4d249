"""The person model: a 2D kinematic skeleton, a colour palette, and the shapes that draw it."""

from __future__ import annotations

from typing import Any

import numpy as np

from posenfs_cli.data.synthetic.core import (
    _FRONT_PROB,
    _J,
    _P,
    SUPER_NAMES,
    Shape,
    _col,
    _perp,
    _unit,
    hsv_to_bgr,
)


def _skeleton(rng: np.random.Generator, height: float) -> dict[str, Any]:
    """Superset joints around a pelvis at the origin, plus the geometry the shapes need."""
    u = rng.uniform
    H = height
    rot = float(np.clip(rng.normal(0, 10), -25, 25))
    lean = float(np.clip(rng.normal(0, 7), -20, 20))
    tilt = float(np.clip(rng.normal(0, 10), -25, 25))
    front = bool(rng.random() < _FRONT_PROB)
    side_l = 1.0 if front else -1.0
    wf = u(0.75, 1.05)
    torso, neck, R = H * u(0.28, 0.32), H * u(0.04, 0.055), H * u(0.068, 0.08)
    sh_w, hip_w = H * u(0.105, 0.125) * wf, H * u(0.06, 0.075) * wf
    fs = u(0.8, 1.0, size=(2, 4))  # foreshortening per side: upper arm, forearm, thigh, shin
    seg = np.array([u(0.15, 0.18), u(0.13, 0.16), u(0.21, 0.25), u(0.2, 0.24)]) * H
    t_arm, t_leg = H * u(0.065, 0.085), H * u(0.08, 0.1)
    active = rng.random(2) < 0.5
    phi_up = np.where(active, u(-30, 170, size=2), u(-10, 50, size=2))
    phi_fore = phi_up + np.clip(rng.normal(0, 55, size=2), -150, 150)
    kick = rng.random(2) < 0.12
    phi_th = np.where(kick, u(35, 95, size=2), u(-12, 35, size=2))
    phi_sh = phi_th + np.clip(rng.normal(-5, 25, size=2), -90, 90)
    yaw = u(-0.35, 0.35)
    behind = rng.random(2) < 0.12

    u_l, u_t, u_h = _unit(rot), _unit(rot + lean), _unit(rot + lean + tilt)
    r_l, r_t, r_h = _perp(u_l), _perp(u_t), _perp(u_h)
    j = np.zeros((len(SUPER_NAMES), 2))
    j[_J["thorax"]] = u_t * torso
    j[_J["upper_neck"]] = j[_J["thorax"]] + u_t * neck
    head_c = j[_J["upper_neck"]] + u_h * R
    j[_J["head_top"]] = head_c + u_h * R
    j[_J["nose"]] = head_c + r_h * (yaw * 0.6 * R) - u_h * (0.15 * R)
    for k, side in enumerate(("left", "right")):
        sg = side_l if side == "left" else -side_l
        j[_J[f"{side}_eye"]] = head_c + u_h * 0.18 * R + r_h * (sg * 0.38 + yaw * 0.5) * R
        j[_J[f"{side}_ear"]] = head_c + r_h * (sg * 0.95 + yaw * 0.25) * R
        sho = j[_J["thorax"]] + r_t * sg * sh_w - u_t * 0.02 * H
        d_up = np.cos(np.radians(phi_up[k])) * -u_t + np.sin(np.radians(phi_up[k])) * sg * r_t
        d_fo = np.cos(np.radians(phi_fore[k])) * -u_t + np.sin(np.radians(phi_fore[k])) * sg * r_t
        d_th = np.cos(np.radians(phi_th[k])) * -u_l + np.sin(np.radians(phi_th[k])) * sg * r_l
        d_sh = np.cos(np.radians(phi_sh[k])) * -u_l + np.sin(np.radians(phi_sh[k])) * sg * r_l
        j[_J[f"{side}_shoulder"]] = sho
        j[_J[f"{side}_elbow"]] = sho + d_up * seg[0] * fs[k, 0]
        j[_J[f"{side}_wrist"]] = j[_J[f"{side}_elbow"]] + d_fo * seg[1] * fs[k, 1]
        hip = r_l * sg * hip_w
        j[_J[f"{side}_hip"]] = hip
        j[_J[f"{side}_knee"]] = hip + d_th * seg[2] * fs[k, 2]
        j[_J[f"{side}_ankle"]] = j[_J[f"{side}_knee"]] + d_sh * seg[3] * fs[k, 3]
    return {
        "joints": j,
        "front": front,
        "side_l": side_l,
        "R": R,
        "t_arm": t_arm,
        "t_leg": t_leg,
        "u_l": u_l,
        "u_t": u_t,
        "u_h": u_h,
        "H": H,
        "behind": behind,
        "head_offset": head_c - j[_J["upper_neck"]],
    }


_SKIN = np.array(
    [
        [0.07, 0.35, 0.95],
        [0.06, 0.45, 0.85],
        [0.07, 0.55, 0.7],
        [0.06, 0.6, 0.5],
        [0.05, 0.55, 0.35],
    ]
)
_HAIR = np.array([[0.08, 0.6, 0.12], [0.07, 0.7, 0.3], [0.1, 0.6, 0.75], [0.0, 0.0, 0.5]])


def _palette(rng: np.random.Generator) -> dict[str, tuple[int, int, int]]:
    """Clothes and skin colours (HSV draws, one vectorised conversion)."""
    u = rng.uniform
    skin = _SKIN[rng.integers(len(_SKIN))] + u(-0.02, 0.02, 3) * [0.5, 1, 1]
    hair = _HAIR[rng.integers(len(_HAIR))]
    shirt = np.array([u(0, 1), u(0.35, 1.0), u(0.45, 1.0)])
    pants_h = (shirt[0] + u(0.15, 0.85)) % 1.0
    pants = np.array([pants_h, u(0.2, 0.9), u(0.25, 0.85)])
    upper = shirt * [1, 1, 0.82]
    fore = skin if rng.random() < 0.5 else shirt * [1, 0.9, 0.6] + [0, 0, 0.05]
    shin = pants * [1, 1, 0.7] if rng.random() < 0.6 else skin
    shoe = np.array([u(0, 1), u(0, 0.6), u(0.08, 0.3)])
    collar = np.array([u(0, 1), u(0, 0.25), u(0.85, 1.0)])
    thigh = pants * [1, 1, 0.85]
    hsv = np.stack(
        [skin, hair, shirt, pants, upper, fore, shin, shoe, collar, skin * [1, 1, 0.7], thigh]
    )
    hsv[:, 0] %= 1.0
    bgr = hsv_to_bgr(np.clip(hsv, 0, 1))
    names = (
        "skin",
        "hair",
        "shirt",
        "pants",
        "upper",
        "fore",
        "shin",
        "shoe",
        "collar",
        "nose",
        "thigh",
    )
    out = {n: _col(c) for n, c in zip(names, bgr, strict=True)}
    out["eye"] = (30, 25, 20)
    return out


def _stripe_color(c: tuple[int, int, int]) -> tuple[int, int, int]:
    lum = 0.114 * c[0] + 0.587 * c[1] + 0.299 * c[2]
    return (235, 235, 235) if lum < 110 else (25, 25, 25)


def _limb(
    a: np.ndarray,
    b: np.ndarray,
    r: float,
    color: tuple[int, int, int],
    person: int,
    part: str,
    left: bool,
) -> list[Shape]:
    """A capsule a->b plus the chirality stripe (side = sign(left) · perp(a->b))."""
    shapes = [Shape("capsule", np.stack([a, b]), r, color, person, _P[part])]
    d = b - a
    n = np.linalg.norm(d)
    if n > 1e-6 and r >= 1.5:
        side = (1.0 if left else -1.0) * np.array([-d[1], d[0]]) / n
        off = side * 0.55 * r
        shapes.append(
            Shape("line", np.stack([a + off, b + off]), max(1.0, 0.5 * r), _stripe_color(color))
        )
    return shapes


def _person_shapes(sk: dict[str, Any], person: int, pal: dict[str, Any]) -> list[Shape]:
    """Painter's-order shapes for one placed skeleton."""
    j = sk["joints"]
    R, t_arm, t_leg, H = sk["R"], sk["t_arm"], sk["t_leg"], sk["H"]
    u_l, u_t, u_h = sk["u_l"], sk["u_t"], sk["u_h"]
    r_l, r_t = _perp(u_l), _perp(u_t)
    out: list[Shape] = []

    def arm(side: str) -> None:
        c = side[0]
        sho, elb, wri = j[_J[f"{side}_shoulder"]], j[_J[f"{side}_elbow"]], j[_J[f"{side}_wrist"]]
        left = side == "left"
        out.extend(_limb(sho, elb, t_arm / 2, pal["upper"], person, f"upper_arm_{c}", left))
        out.extend(_limb(elb, wri, t_arm * 0.45, pal["fore"], person, f"forearm_{c}", left))
        d = wri - elb
        d = d / max(np.linalg.norm(d), 1e-6)
        hand = wri + d * 0.25 * t_arm
        out.append(
            Shape(
                "capsule",
                np.stack([hand, hand]),
                0.62 * t_arm,
                pal["skin"],
                person,
                _P[f"hand_{c}"],
            )
        )

    sides = ("left", "right")

    def legs() -> None:
        for side in sides:
            c, left = side[0], side == "left"
            sg = sk["side_l"] if left else -sk["side_l"]
            hip, knee, ank = j[_J[f"{side}_hip"]], j[_J[f"{side}_knee"]], j[_J[f"{side}_ankle"]]
            out.extend(_limb(hip, knee, t_leg / 2, pal["thigh"], person, f"thigh_{c}", left))
            out.extend(_limb(knee, ank, t_leg * 0.45, pal["shin"], person, f"shin_{c}", left))
            fdir = sg * r_l * 0.9 - u_l * 0.35
            toe = ank + fdir / np.linalg.norm(fdir) * 0.07 * H
            foot = _P[f"foot_{c}"]
            out.append(
                Shape("capsule", np.stack([ank, toe]), 0.3 * t_leg, pal["shoe"], person, foot)
            )

    for k, side in enumerate(sides):
        if sk["behind"][k]:
            arm(side)
    # torso: shirt quad, pants band over the hips, collar mark when facing the camera
    corners = []
    for side in sides:
        sg = sk["side_l"] if side == "left" else -sk["side_l"]
        top = j[_J[f"{side}_shoulder"]] + u_t * 0.3 * t_arm + r_t * sg * 0.25 * t_arm
        bot = j[_J[f"{side}_hip"]] + r_l * sg * 0.5 * t_leg - u_l * 0.15 * t_leg
        corners.append((top, bot))
    (tl, bl), (tr, br) = corners
    torso = _P["torso"]
    out.append(Shape("poly", np.stack([tl, tr, br, bl]), 0.0, pal["shirt"], person, torso))
    band_l, band_r = bl + (tl - bl) * 0.22, br + (tr - br) * 0.22
    out.append(Shape("poly", np.stack([band_l, band_r, br, bl]), 0.0, pal["pants"], person, torso))
    legs()  # over the pants band, so each hip is the top end of a visible thigh
    thorax = j[_J["thorax"]]
    if sk["front"]:
        w = np.linalg.norm(tl - tr) * 0.2
        v = np.stack(
            [
                thorax + r_t * w + u_t * 0.01 * H,
                thorax - u_t * 0.1 * H,
                thorax - r_t * w + u_t * 0.01 * H,
            ]
        )
        out.append(Shape("poly", v, 0.0, pal["collar"]))
    neck_top = j[_J["upper_neck"]] + u_h * 0.3 * R
    out.append(
        Shape("capsule", np.stack([thorax, neck_top]), 0.42 * R, pal["skin"], person, _P["neck"])
    )
    for k, side in enumerate(sides):
        if not sk["behind"][k]:
            arm(side)
    head = _P["head"]
    for side in sides:
        ear = j[_J[f"{side}_ear"]]
        out.append(Shape("capsule", np.stack([ear, ear]), 0.28 * R, pal["skin"], person, head))
    hc = j[_J["upper_neck"]] + sk["head_offset"]
    if sk["front"]:
        out.append(Shape("capsule", np.stack([hc, hc]), R, pal["skin"], person, head))
        hair_c = hc + u_h * 0.15 * R
        out.append(
            Shape("capsule", np.stack([hair_c, hair_c]), 0.85 * R, pal["hair"], person, head)
        )
        face_c = hc - u_h * 0.18 * R
        out.append(Shape("capsule", np.stack([face_c, face_c]), 0.76 * R, pal["skin"]))
        for e in ("left_eye", "right_eye"):
            p = j[_J[e]]
            out.append(Shape("capsule", np.stack([p, p]), 0.12 * R, pal["eye"]))
        p = j[_J["nose"]]
        out.append(Shape("capsule", np.stack([p, p]), 0.1 * R, pal["nose"]))
        m = p - u_h * 0.35 * R
        rh = _perp(u_h)
        out.append(
            Shape(
                "line",
                np.stack([m - rh * 0.2 * R, m + rh * 0.2 * R]),
                max(1.0, 0.08 * R),
                pal["nose"],
            )
        )
    else:
        out.append(Shape("capsule", np.stack([hc, hc]), R, pal["hair"], person, head))
    return out
