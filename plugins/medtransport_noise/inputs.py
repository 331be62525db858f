"""What the forward process noises: a phantom, an array from a NetCDF file, the result of
another scenario run in-process, or an image file. Each becomes an ``xarray.DataArray`` of 1 to
3 dimensions whose values and coordinates carry units.

Paths are relative to the directory of the scenario file that names them.

- ``phantom``: :func:`medtransport_noise.phantom.shepp_logan` on ``size`` pixels over a square
  ``field_of_view`` (coordinates y, x in m, dimensionless intensity);
- ``netcdf``: ``variable`` of a NetCDF file (e.g. a temperature map a medtransport run wrote),
  at ``time`` (``first``, ``last``, an output index or a time such as ``"30 min"``, matched to
  the nearest output), other extra dimensions fixed by ``select`` (dimension → index);
- ``scenario``: the same, from another scenario run in-process (its audits must pass);
- ``image``: a PNG/JPEG read with matplotlib, colour reduced to luma Y = 0.299R + 0.587G + 0.114B
  (ITU-R BT.601), coordinates in pixels unless ``pixel_spacing`` is given.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from medtransport.domain import NotBool
from medtransport.errors import MedtransportError, ScenarioError
from medtransport.units import Q_, Qty

__all__ = ["ImageInput", "Input", "NetCDFInput", "PhantomInput", "ScenarioInput", "load_input"]

TimeSelect = Literal["first", "last"] | Annotated[int, NotBool] | Qty("s")
_running = threading.local()


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhantomInput(_Input):
    """A Shepp–Logan head phantom (Toft's modified intensities)."""

    kind: Literal["phantom"]
    size: tuple[Annotated[int, Field(ge=8, le=4096), NotBool],
                Annotated[int, Field(ge=8, le=4096), NotBool]] = (128, 128)
    field_of_view: Qty("m", gt=0) = Q_(0.24, "m")


class _FileArray(_Input):
    variable: str = Field(min_length=1)
    time: TimeSelect = "last"
    select: dict[str, Annotated[int, NotBool]] = Field(default_factory=dict)


class NetCDFInput(_FileArray):
    """A variable of a NetCDF file."""

    kind: Literal["netcdf"]
    path: str = Field(min_length=1)


class ScenarioInput(_FileArray):
    """A variable of another scenario's audited result, run in-process."""

    kind: Literal["scenario"]
    scenario: str = Field(min_length=1)


class ImageInput(_Input):
    """A PNG or JPEG image (grey or colour)."""

    kind: Literal["image"]
    path: str = Field(min_length=1)
    pixel_spacing: Qty("m", gt=0) | None = None


Input = Annotated[PhantomInput | NetCDFInput | ScenarioInput | ImageInput,
                  Field(discriminator="kind")]


def load_input(spec: Any, base: Path, field: str = "parameters.input") -> xr.DataArray:
    """The input array, with ``units`` on it and its coordinates."""
    if isinstance(spec, PhantomInput):
        return _phantom(spec)
    if isinstance(spec, ImageInput):
        return _image(spec, base, field)
    if isinstance(spec, NetCDFInput):
        path = _existing(base, spec.path, f"{field}.path")
        from medtransport.results import read_netcdf

        try:
            ds = read_netcdf(path)
        except MedtransportError:
            raise
        except Exception as exc:
            raise ScenarioError([(f"{field}.path", f"cannot read {path.name} as NetCDF: "
                                                   f"{type(exc).__name__}: {exc}")]) from None
        return _pick(ds, spec, field, path.name)
    if isinstance(spec, ScenarioInput):
        return _pick(_run_other(base, spec, field), spec, field, spec.scenario)
    raise TypeError(f"unknown input {spec!r}")  # pragma: no cover - pydantic refuses first


def _existing(base: Path, name: str, field: str) -> Path:
    # Confined to the scenario's directory tree unless the command allows more (the core's
    # rule for every file a scenario names).
    from medtransport.trust import input_path

    return input_path(base, name, field)


def _phantom(spec: PhantomInput) -> xr.DataArray:
    from medtransport_noise.phantom import shepp_logan

    ny, nx = spec.size
    fov = float(spec.field_of_view.m_as("m"))
    y = (np.arange(ny) + 0.5) / ny * fov - fov / 2
    x = (np.arange(nx) + 0.5) / nx * fov - fov / 2
    return xr.DataArray(shepp_logan(ny, nx), dims=("y", "x"), coords={
        "y": ("y", y[::-1].copy(), {"units": "m", "long_name": "position y"}),
        "x": ("x", x, {"units": "m", "long_name": "position x"})},
        attrs={"units": "dimensionless", "long_name": "Shepp–Logan phantom intensity"})


def _image(spec: ImageInput, base: Path, field: str) -> xr.DataArray:
    path = _existing(base, spec.path, f"{field}.path")
    import matplotlib.image as mpimg

    try:
        img = np.asarray(mpimg.imread(path), dtype=np.float64)
    except Exception as exc:
        raise ScenarioError([(f"{field}.path", f"cannot read {path.name} as an image: "
                                               f"{type(exc).__name__}: {exc}")]) from None
    if img.ndim == 3:
        img = img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114 \
            if img.shape[2] >= 3 else img[..., 0]
    ny, nx = img.shape
    if spec.pixel_spacing is None:
        unit, h = "pixel", 1.0
    else:
        unit, h = "m", float(spec.pixel_spacing.m_as("m"))
    return xr.DataArray(img, dims=("y", "x"), coords={
        "y": ("y", np.arange(ny) * h, {"units": unit, "long_name": "row"}),
        "x": ("x", np.arange(nx) * h, {"units": unit, "long_name": "column"})},
        attrs={"units": "dimensionless", "long_name": f"image intensity ({path.name})"})


def _run_other(base: Path, spec: ScenarioInput, field: str) -> xr.Dataset:
    path = _existing(base, spec.scenario, f"{field}.scenario")
    stack: list[Path] = getattr(_running, "stack", [])
    if path in stack:
        raise ScenarioError([(f"{field}.scenario", f"{path.name} takes its input from itself "
                                                   "(a cycle of scenarios)")])
    from medtransport.errors import AuditFailure
    from medtransport.runner import run
    from medtransport.trust import nested_run

    _running.stack = [*stack, path]
    try:
        with nested_run(f"{field}.scenario"):
            return run(path)
    except AuditFailure as exc:
        raise ScenarioError([(f"{field}.scenario", f"{path.name} failed its audits, so its "
                                                   f"result cannot be used: {exc}")]) from None
    finally:
        _running.stack = stack


def _pick(ds: xr.Dataset, spec: NetCDFInput | ScenarioInput, field: str,
          source: str) -> xr.DataArray:
    if spec.variable not in ds.data_vars:
        raise ScenarioError([(f"{field}.variable", f"{source} has no variable "
                                                   f"{spec.variable!r}; it has "
                                                   f"{', '.join(map(str, ds.data_vars))}")])
    da = ds[spec.variable]
    if "time" in da.dims:
        n = da.sizes["time"]
        if spec.time == "first":
            i = 0
        elif spec.time == "last":
            i = n - 1
        elif isinstance(spec.time, int):
            i = spec.time if spec.time >= 0 else n + spec.time
            if not 0 <= i < n:
                raise ScenarioError([(f"{field}.time", f"{source} has {n} output times; "
                                                       f"index {spec.time} is out of range")])
        else:
            times = Q_(np.asarray(ds["time"].values, dtype=float),
                       ds["time"].attrs.get("units", "s")).m_as("s")
            i = int(np.argmin(np.abs(times - spec.time.m_as("s"))))
        da = da.isel(time=i)
    for dim, index in spec.select.items():
        if dim not in da.dims:
            raise ScenarioError([(f"{field}.select.{dim}", f"{spec.variable} has no dimension "
                                                           f"{dim!r} (it has {da.dims})")])
        if not -da.sizes[dim] <= index < da.sizes[dim]:
            raise ScenarioError([(f"{field}.select.{dim}", f"index {index} out of range for "
                                                           f"{da.sizes[dim]} values")])
        da = da.isel({dim: index})
    if not 1 <= da.ndim <= 3:
        raise ScenarioError([(f"{field}.select", f"{spec.variable} has dimensions {da.dims}; "
                                                 "fix all but 1 to 3 of them with 'select'")])
    if "units" not in da.attrs:
        raise ScenarioError([(f"{field}.variable", f"{spec.variable} in {source} carries no "
                                                   "units attribute")])
    da = da.astype(np.float64).drop_vars([c for c in da.coords if c not in da.dims])
    for dim in da.dims:
        if dim not in da.coords:
            da = da.assign_coords({dim: (dim, np.arange(da.sizes[dim]),
                                         {"units": "dimensionless", "long_name": f"{dim} index"})})
        else:  # a file written elsewhere may leave out the labels
            attrs = dict(da[dim].attrs)
            attrs.setdefault("long_name", str(dim))
            attrs.setdefault("units", "dimensionless")
            da = da.assign_coords({dim: (dim, np.asarray(da[dim].values), attrs)})
    return da
