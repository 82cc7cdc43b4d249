"""The ``KeypointLayout`` record: every fact about one keypoint layout in one frozen object.

A layout is code, not user input, so inconsistencies (a flip pair that is not a left/right
pair, a part group naming a joint the layout lacks) fail at import with ``ValueError``; lookups
by name that users can trigger (custom part groups) raise ``PosenfsError``.
"""

from __future__ import annotations

from dataclasses import dataclass

from posenfs_cli.errors import PosenfsError

Color = tuple[int, int, int]
# One part group: (part name, joint names). A table is the groups of one part count P.
PartSpec = tuple[str, tuple[str, ...]]
PartTable = tuple[PartSpec, ...]

# BGR colours for drawing (OpenCV): left = blue-ish, right = orange, centre = green.
LEFT_COLOR: Color = (255, 128, 0)
RIGHT_COLOR: Color = (0, 128, 255)
CENTER_COLOR: Color = (0, 200, 0)


@dataclass(frozen=True)
class Palette:
    """Colours by body side, so a left/right swap is visible at a glance."""

    left: Color = LEFT_COLOR
    right: Color = RIGHT_COLOR
    center: Color = CENTER_COLOR

    def of(self, side: str) -> Color:
        return {"left": self.left, "right": self.right}.get(side, self.center)


def _mirror_name(name: str) -> str | None:
    for a, b in (("left_", "right_"), ("right_", "left_")):
        if name.startswith(a):
            return b + name[len(a) :]
    return None


@dataclass(frozen=True)
class KeypointLayout:
    """Joint names in the dataset's native order and everything derived from them.

    - ``flip_pairs``/``skeleton``: native indices; flip pairs must be ``left_x``/``right_x``.
    - ``lower_body``: joint names of the lower half, for half-body crops.
    - ``part_groups``: the paper's Table I groups as ``(P, ((part, joint names), ...))``; P=1
      (all joints in one part) is implied and needs no entry.
    - ``sigmas``: OKS per-joint sigmas (empty when the dataset is not scored by OKS).
    - ``pckh_columns`` / ``pckh_mean_excludes``: the PCKh table (empty when not scored by PCKh).
    """

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...] = ()
    lower_body: tuple[str, ...] = ()
    part_groups: tuple[tuple[int, PartTable], ...] = ()
    pckh_columns: tuple[PartSpec, ...] = ()
    pckh_mean_excludes: tuple[str, ...] = ()
    palette: Palette = Palette()

    def __post_init__(self) -> None:
        k = len(self.names)
        where = f"keypoint layout {self.name!r}"
        if len(set(self.names)) != k:
            raise ValueError(f"{where}: joint names repeat")
        seen: set[int] = set()
        for a, b in self.flip_pairs:
            if not (0 <= a < k and 0 <= b < k) or {a, b} & seen:
                raise ValueError(f"{where}: flip pair {(a, b)} out of range or repeated")
            seen |= {a, b}
            if _mirror_name(self.names[a]) != self.names[b]:
                raise ValueError(f"{where}: {self.names[a]} and {self.names[b]} are no mirror pair")
        if any(not (0 <= a < k and 0 <= b < k) for a, b in self.skeleton):
            raise ValueError(f"{where}: skeleton link out of range")
        if self.sigmas and len(self.sigmas) != k:
            raise ValueError(f"{where}: {len(self.sigmas)} sigmas for {k} joints")
        named = [*self.lower_body, *self.pckh_mean_excludes]
        named += [j for _, table in self.part_groups for _, js in table for j in js]
        named += [j for _, js in self.pckh_columns for j in js]
        unknown = sorted(set(named) - set(self.names))
        if unknown:
            raise ValueError(f"{where}: unknown joint name(s) {', '.join(unknown)}")
        counts = [p for p, _ in self.part_groups]
        if 1 in counts or len(set(counts)) != len(counts):
            raise ValueError(f"{where}: part counts {counts} repeat or redefine P=1")

    @property
    def num_joints(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise PosenfsError(
                f"keypoint {name!r} is not in the {self.name} layout ({', '.join(self.names)})"
            ) from None

    def indices(self, names: tuple[str, ...] | list[str]) -> tuple[int, ...]:
        return tuple(self.index(n) for n in names)

    def side(self, joint: int) -> str:
        """'left', 'right' or 'center' from the joint name."""
        n = self.names[joint]
        if n.startswith("left_"):
            return "left"
        if n.startswith("right_"):
            return "right"
        return "center"

    def color(self, joint: int) -> Color:
        return self.palette.of(self.side(joint))

    def link_color(self, a: int, b: int) -> Color:
        sa, sb = self.side(a), self.side(b)
        return self.palette.of(sa if sa == sb else "center")

    @property
    def joint_colors(self) -> tuple[Color, ...]:
        return tuple(self.color(j) for j in range(self.num_joints))

    @property
    def link_colors(self) -> tuple[Color, ...]:
        return tuple(self.link_color(a, b) for a, b in self.skeleton)

    def flip_permutation(self) -> list[int]:
        """perm[i] = index of the joint that joint i becomes after a horizontal flip."""
        perm = list(range(self.num_joints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    @property
    def lower_body_indices(self) -> tuple[int, ...]:
        return tuple(sorted(self.indices(self.lower_body)))

    @property
    def part_counts(self) -> tuple[int, ...]:
        """The part counts P with a defined grouping (1 always), ascending."""
        return tuple(sorted({1, *(p for p, _ in self.part_groups)}))

    def part_table(self, parts: int) -> PartTable | None:
        """The named groups for P = ``parts`` (P=1: one part 'all'), None if undefined."""
        if parts == 1:
            return (("all", self.names),)
        return dict(self.part_groups).get(parts)

    @property
    def pckh_column_indices(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        return tuple((col, self.indices(js)) for col, js in self.pckh_columns)

    @property
    def pckh_mean_indices(self) -> tuple[int, ...]:
        """Joints averaged in the PCKh Mean: all but ``pckh_mean_excludes``."""
        skip = set(self.indices(self.pckh_mean_excludes))
        return tuple(j for j in range(self.num_joints) if j not in skip)


def table_one(
    head: tuple[str, ...], pelvis: tuple[str, ...] = (), counts: tuple[int, ...] = (3, 5, 8)
) -> tuple[tuple[int, PartTable], ...]:
    """The paper's Table I groups for P in ``counts``, by joint name.

    Limbs have the same names in every layout; only the head joints (and MPII's pelvis, which
    goes with the hips) differ, so a layout passes those and gets the standard grouping.
    """
    shoulders = ("left_shoulder", "right_shoulder")
    arms = ("left_elbow", "right_elbow", "left_wrist", "right_wrist")
    hips = ("left_hip", "right_hip")
    knees_ankles = ("left_knee", "right_knee", "left_ankle", "right_ankle")
    tables: dict[int, PartTable] = {
        3: (
            ("head", head),
            ("upper_limb", shoulders + arms),
            ("lower_limb", hips + knees_ankles + pelvis),
        ),
        5: (
            ("head_shoulder", head + shoulders),
            ("left_lower_arm", ("left_elbow", "left_wrist")),
            ("right_lower_arm", ("right_elbow", "right_wrist")),
            ("thigh", hips + pelvis),
            ("lower_limb", knees_ankles),
        ),
        8: (
            ("head_shoulder", head + shoulders),
            ("left_upper_arm", ("left_shoulder", "left_elbow")),
            ("left_lower_arm", ("left_elbow", "left_wrist")),
            ("right_upper_arm", ("right_shoulder", "right_elbow")),
            ("right_lower_arm", ("right_elbow", "right_wrist")),
            ("thigh", hips + ("left_knee", "right_knee") + pelvis),
            ("left_lower_leg", ("left_knee", "left_ankle")),
            ("right_lower_leg", ("right_knee", "right_ankle")),
        ),
    }
    return tuple((p, tables[p]) for p in counts)
