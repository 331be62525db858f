"""Image files in and maps out: NIfTI-1/2 volumes, masks and BIDS-style JSON sidecars.

Generic file I/O (no physics): a NIfTI file becomes an :class:`Image` — its voxel array (3-D or
4-D), the voxel-to-world affine, the voxel sizes and the frame interval in the units its header
states (``xyzt_units``; NIfTI-1 §"units", unknown spatial units are taken as mm, the standard's
default for scanners) — and a map goes back to NIfTI on the grid of the image it was fitted
from, with the same qform and sform (and their codes), written atomically, with its unit in a
BIDS-style sidecar (``Units``, ``Description``) and, when given, the fit's audit report beside
it (``<name>_audit.json``).

Every refusal names the file and what was expected. Needs the optional extra ``imaging``
(nibabel); importing this module without it raises a clear error only when a file is touched.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pint

from medtransport.errors import MedtransportError, ScenarioError
from medtransport.units import Q_

__all__ = ["BIDS_UNITS", "Image", "ImageError", "read_image", "read_mask", "read_sidecar",
           "sidecar_quantity", "write_image", "write_map", "write_maps"]

#: The units the BIDS specification fixes for the sidecar fields read here (BIDS 1.9,
#: "MRI: sequence specifics"): times in seconds, angles in degrees.
BIDS_UNITS: dict[str, str] = {"RepetitionTime": "s", "EchoTime": "s", "InversionTime": "s",
                              "FlipAngle": "degree", "MagneticFieldStrength": "T",
                              # diffusion timing (Δ, δ) as dMRI sidecars commonly carry it
                              "LargeDelta": "s", "SmallDelta": "s"}

# NIfTI xyzt_units codes → pint units (nibabel's names)
_SPACE = {"meter": "m", "mm": "mm", "micron": "um", "unknown": "mm"}
_TIME = {"sec": "s", "msec": "ms", "usec": "us", "hz": None, "ppm": None, "rads": None,
         "unknown": "s"}


class ImageError(ScenarioError):
    """An image, mask, gradient table or sidecar that cannot be used as given."""


def _nib() -> Any:
    try:
        import nibabel
    except ImportError:  # pragma: no cover - the test extra installs it
        raise MedtransportError("reading and writing NIfTI images needs the optional extra "
                                "'imaging': pip install 'medtransport[imaging]'") from None
    return nibabel


@dataclass(frozen=True)
class Image:
    """A NIfTI volume: ``data`` (float64, 3-D or 4-D, x-y-z[-frame]), ``affine`` (voxel →
    world, mm), the header it came with and its ``path``."""

    data: np.ndarray
    affine: np.ndarray
    header: Any
    path: Path

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape[:3]

    @property
    def frames(self) -> int:
        return 1 if self.data.ndim == 3 else self.data.shape[3]

    @property
    def voxel_size(self) -> pint.Quantity:
        """Edge lengths of a voxel (3,), in the header's spatial unit."""
        space, _ = self.header.get_xyzt_units()
        return Q_(np.asarray(self.header.get_zooms()[:3], dtype=float), _SPACE[space])

    @property
    def frame_interval(self) -> pint.Quantity | None:
        """The time between frames of a 4-D image (pixdim[4]) in the header's time unit, or
        None for a 3-D image or a frame axis that is not time."""
        if self.data.ndim < 4:
            return None
        _, time = self.header.get_xyzt_units()
        unit = _TIME.get(time)
        zooms = self.header.get_zooms()
        if unit is None or len(zooms) < 4 or not zooms[3] > 0:
            return None
        return Q_(float(zooms[3]), unit)


def _resolve(path: str | Path, base: Path | None, field: str) -> Path:
    p = Path(path)
    if base is not None and not p.is_absolute():
        p = base / p
    if not p.is_file():
        where = f" (relative to {base}/, the scenario's directory)" if base is not None else ""
        raise ImageError([(field, f"no such file: {path}{where}")])
    return p


def read_image(path: str | Path, *, base: Path | None = None, field: str = "image",
               ndim: tuple[int, ...] = (3, 4)) -> Image:
    """Read a NIfTI-1/2 file (``.nii`` or ``.nii.gz``) as float64, refusing other ranks."""
    p = _resolve(path, base, field)
    nib = _nib()
    try:
        img = nib.load(str(p))
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise TypeError(f"a {type(img).__name__}, not NIfTI")
        data = np.asarray(img.get_fdata(dtype=np.float64))
    except Exception as exc:
        raise ImageError([(field, f"cannot read {p.name} as a NIfTI image: "
                                  f"{type(exc).__name__}: {exc}")]) from None
    # trailing singleton axes (a 3-D volume stored as x-y-z-1) are not frames
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim not in ndim:
        want = " or ".join(f"{n}-D" for n in ndim)
        raise ImageError([(field, f"{p.name} is a {data.ndim}-D image of shape "
                                  f"{data.shape}; expected a {want} image")])
    return Image(data, np.asarray(img.affine, dtype=float), img.header, p)


def read_mask(path: str | Path, like: Image, *, base: Path | None = None,
              field: str = "mask") -> np.ndarray:
    """A 3-D mask (non-zero = inside) on the grid of ``like``: same shape, same affine (to
    1e-3 mm), at least one voxel inside."""
    m = read_image(path, base=base, field=field, ndim=(2, 3, 4))
    if m.data.ndim != 3:
        raise ImageError([(field, f"{m.path.name} is a {m.data.ndim}-D mask of shape "
                                  f"{m.data.shape}; expected a 3-D mask of shape {like.shape} "
                                  f"like {like.path.name}")])
    if m.shape != like.shape:
        raise ImageError([(field, f"{m.path.name} has shape {m.shape} but {like.path.name} "
                                  f"has {like.shape}; a mask must be on the image's grid")])
    if not np.allclose(m.affine, like.affine, atol=1e-3):
        raise ImageError([(field, f"{m.path.name} and {like.path.name} have different "
                                  "affines (voxel → world); a mask must be on the image's grid")])
    inside = m.data != 0
    if not inside.any():
        raise ImageError([(field, f"{m.path.name} has no voxel inside (all zero)")])
    return inside


def read_sidecar(path: str | Path, *, base: Path | None = None,
                 field: str = "sidecar") -> dict[str, Any]:
    """A BIDS-style JSON sidecar as a mapping."""
    p = _resolve(path, base, field)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImageError([(field, f"cannot read {p.name} as JSON: {exc}")]) from None
    if not isinstance(data, dict):
        raise ImageError([(field, f"{p.name} holds a {type(data).__name__}; expected a JSON "
                                  "object of sidecar fields")])
    return data


def sidecar_quantity(sidecar: dict[str, Any], key: str, *, source: str = "sidecar",
                     required: bool = True) -> pint.Quantity | None:
    """``sidecar[key]`` in the unit BIDS fixes for it (:data:`BIDS_UNITS`); a list becomes an
    array (e.g. the flip angles of a variable-flip-angle series)."""
    if key not in sidecar:
        if required:
            raise ImageError([(f"{source}.{key}", f"{source} has no {key!r} (expected, in "
                                                  f"{BIDS_UNITS[key]})")])
        return None
    value = sidecar[key]
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ImageError([(f"{source}.{key}", f"expected a number in {BIDS_UNITS[key]}, got "
                                              f"{value!r}")]) from None
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ImageError([(f"{source}.{key}", f"expected non-negative finite values in "
                                              f"{BIDS_UNITS[key]}, got {value!r}")])
    # a BIDS time above 100 s or a flip angle in radians is a unit slip, not a sequence
    if BIDS_UNITS[key] == "s" and np.any(arr > 100):
        raise ImageError([(f"{source}.{key}", f"{value!r} s is implausible; BIDS gives "
                                              f"{key} in seconds (milliseconds given?)")])
    return Q_(arr if arr.ndim else float(arr), BIDS_UNITS[key])


def _map_path(path: str | Path) -> tuple[Path, Path, Path]:
    p = Path(path)
    name = p.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            stem = name[: -len(ext)]
            return p, p.with_name(stem + ".json"), p.with_name(stem + "_audit.json")
    raise MedtransportError(f"output: {p.name} must end in .nii or .nii.gz (a NIfTI map)")


def write_map(path: str | Path, values: np.ndarray, like: Image, unit: str, *,
              description: str = "", audit: dict[str, Any] | str | None = None,
              extra: dict[str, Any] | None = None) -> Path:
    """Write ``values`` (the 3-D grid of ``like``, or that grid + one trailing axis such as
    eigenvector components) as a float32 NIfTI on ``like``'s grid: its qform and sform with
    their codes, its voxel sizes and units. Beside it, ``<stem>.json`` with ``Units`` (pint
    syntax) and ``Description``, and ``<stem>_audit.json`` when ``audit`` is given. Each file
    is written atomically."""
    from medtransport.results import write_atomically

    target, side, audit_path = _map_path(path)
    values = np.asarray(values)
    if values.shape[:3] != like.shape or values.ndim not in (3, 4):
        raise MedtransportError(f"map {target.name}: shape {values.shape} is not the grid "
                                f"{like.shape} of {like.path.name}")
    Q_(1.0, unit)  # an unparseable unit is a bug of the caller: fail before writing
    nib = _nib()
    cls = nib.Nifti2Image if isinstance(like.header, nib.Nifti2Header) else nib.Nifti1Image
    header = cls.header_class()
    space, _time = like.header.get_xyzt_units()
    img = cls(values.astype(np.float32), None, header)
    qform, qcode = like.header.get_qform(coded=True)
    sform, scode = like.header.get_sform(coded=True)
    if qform is None and sform is None:  # neither coded: keep the affine nibabel used
        img.set_sform(like.affine, 2)
    if qform is not None:
        img.set_qform(qform, int(qcode))
    else:
        img.set_qform(None, 0)
    if sform is not None:
        img.set_sform(sform, int(scode))
    elif qform is not None:
        img.set_sform(None, 0)
    zooms = tuple(like.header.get_zooms()[:3]) + ((1.0,) if values.ndim == 4 else ())
    img.header.set_zooms(zooms)
    img.header.set_xyzt_units(space if space != "unknown" else "mm", "sec")
    img.header["descrip"] = (description or target.name)[:79].encode("ascii", "replace")
    suffix = ".nii.gz" if target.name.endswith(".nii.gz") else ".nii"
    sidecar = {"Units": unit, "Description": description, "Sources": [like.path.name],
               **(extra or {})}
    with write_atomically(target, suffix) as tmp:
        nib.save(img, str(tmp))
    with write_atomically(side, ".json.tmp") as tmp:
        tmp.write_text(json.dumps(sidecar, indent=2, default=_jsonable) + "\n",
                       encoding="utf-8")
    if audit is not None:
        text = audit if isinstance(audit, str) else json.dumps(audit, indent=2,
                                                               default=_jsonable)
        with write_atomically(audit_path, ".json.tmp") as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")
    return target


def write_maps(dataset: Any, directory: Path, like: Image, mask: np.ndarray, *,
               extra: dict[str, Any] | None = None) -> list[Path]:
    """Every ``map_<name>`` variable of a fit's ``dataset`` (values over the voxels of
    ``mask``, optionally with one trailing axis) as ``<directory>/<name>.nii.gz`` on ``like``'s
    grid, with its unit, its long name and the dataset's audit report (:func:`write_map`)."""
    report = dataset.attrs.get("audit_report", "")
    written = []
    for name in dataset.data_vars:
        if not str(name).startswith("map_"):
            continue
        var = dataset[name]
        values = np.asarray(var.values)
        full = np.zeros(like.shape + values.shape[1:])
        full[mask] = values
        written.append(write_map(directory / f"{str(name)[4:]}.nii.gz", full, like,
                                 var.attrs["units"], description=var.attrs["long_name"],
                                 audit=report, extra=extra))
    return written


def write_image(path: str | Path, values: np.ndarray, affine: np.ndarray,
                voxel_size_mm: tuple[float, float, float], *,
                frame_interval_s: float | None = None, dtype: type = np.float32) -> Path:
    """Write a 3-D/4-D NIfTI-1 (float32 unless ``dtype``) with the affine as both qform and
    sform (code 1, scanner), spatial unit mm and time unit s (e.g. a simulated acquisition),
    atomically."""
    from medtransport.results import write_atomically

    nib = _nib()
    values = np.asarray(values, dtype=dtype)
    img = nib.Nifti1Image(values, affine)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    zooms = tuple(voxel_size_mm)
    if values.ndim == 4:
        zooms += (float(frame_interval_s) if frame_interval_s else 1.0,)
    img.header.set_zooms(zooms)
    img.header.set_xyzt_units("mm", "sec")
    target = Path(path)
    suffix = ".nii.gz" if target.name.endswith(".nii.gz") else ".nii"
    with write_atomically(target, suffix) as tmp:
        nib.save(img, str(tmp))
    return target


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)
