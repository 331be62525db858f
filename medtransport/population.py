"""Virtual patient populations: covariates and inter-individual variability, sampled
reproducibly patient by patient.

Inter-individual variability (IIV). A parameter θ of patient i is θ_i = θ·exp(η_i) — the
log-normal ("exponential") model of NONMEM (Sheiner & Beal 1980, J Pharmacokinet Biopharm
8:553) — with the vector η_i ~ N(0, Ω). Ω is given as ``variability`` (ω_j = SD of ln θ_j,
≈ the coefficient of variation for ω ≲ 0.3) and ``correlations`` (ρ_jk), so that
Ω = D·R·D with D = diag(ω); or, for a block of parameters, as a ``covariance`` matrix
(NONMEM's $OMEGA BLOCK), split into ω_j = √Ω_jj and ρ_jk = Ω_jk/(ω_j·ω_k). Then

    η_i = D·L·z_i,   R = L·Lᵀ (Cholesky),   z_i ~ N(0, I).

Covariates (weight, age, height, serum creatinine, sex) are drawn with a Gaussian copula
(Nelsen, *An Introduction to Copulas*, 2nd ed., 2006, §3.3.1): latent normals x_i = L_c·z'_i
with the correlation matrix R_c of ``covariate_correlations``; each covariate is the quantile
function of its marginal evaluated at Φ(x), truncated to [lower, upper] by mapping
u ↦ F(lower) + u·(F(upper) − F(lower)):

    normal:     X = μ + σ·Φ⁻¹(u_t)          lognormal:   X = median·exp(ω·Φ⁻¹(u_t))
    sex:        female when Φ(x) > 1 − f  (f = female_fraction; ρ with "sex" is ρ with
                being female)

Reproducibility. Every patient consumes k = (number of η) + (number of covariates) draws of one
PCG64 stream: patient i's j-th standard normal is draw number i·k + j, mapped to a normal by the
inverse CDF. Each uniform double consumes exactly one 64-bit draw, so a block of patients
[a, b) can be sampled on its own by advancing the stream by a·k; the Cholesky factors act on
each patient's own z — the same patient gets the same parameters and covariates whatever the
chunking. Without covariates and correlations, η_j = ω_j·z_j exactly as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pint
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from medtransport.units import Q_, Qty

__all__ = ["MAX_PATIENTS", "CovariateSpec", "PatientBatch", "PopulationOutput",
           "PopulationSample",
           "PopulationSpec", "sample_etas", "sample_population", "standard_normals"]

MAX_PATIENTS = 10_000_000

_Omega = Annotated[float, Field(ge=0, le=3, allow_inf_nan=False)]
_Rho = Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Continuous(_Section):
    """A continuous covariate: ``normal`` (mean, sd) or ``lognormal`` (median, omega = SD of
    the log), optionally truncated to [lower, upper]."""

    distribution: Literal["normal", "lognormal"]
    mean: Any = None
    sd: Any = None
    median: Any = None
    omega: _Omega | None = None
    lower: Any = None
    upper: Any = None

    @model_validator(mode="after")
    def _shape(self) -> _Continuous:
        need = ("mean", "sd") if self.distribution == "normal" else ("median", "omega")
        wrong = ("median", "omega") if self.distribution == "normal" else ("mean", "sd")
        missing = [n for n in need if getattr(self, n) is None]
        if missing:
            raise ValueError(f"a {self.distribution} distribution needs {' and '.join(need)}"
                             f" (missing {', '.join(missing)})")
        extra = [n for n in wrong if getattr(self, n) is not None]
        if extra:
            raise ValueError(f"a {self.distribution} distribution takes {' and '.join(need)},"
                             f" not {', '.join(extra)}")
        if self.distribution == "normal" and self.sd.magnitude <= 0:
            raise ValueError("sd must be > 0")
        if self.lower is not None and self.upper is not None and \
                self.lower.magnitude >= self.upper.magnitude:
            raise ValueError("lower must be below upper")
        if self.distribution == "lognormal" and self.lower is not None and \
                self.lower.magnitude < 0:
            raise ValueError("lower of a lognormal covariate must be ≥ 0")
        return self

    def _magnitudes(self) -> tuple[float, float, float, float]:
        """(location, scale, lower, upper) in the canonical unit."""
        loc = (self.mean if self.distribution == "normal" else self.median).magnitude
        scale = self.sd.magnitude if self.distribution == "normal" else float(self.omega or 0)
        lo = -math.inf if self.lower is None else float(self.lower.magnitude)
        hi = math.inf if self.upper is None else float(self.upper.magnitude)
        return float(loc), float(scale), lo, hi

    def quantile(self, x: np.ndarray) -> np.ndarray:
        """The covariate from latent standard normals ``x`` (truncated inverse CDF)."""
        loc, scale, lo, hi = self._magnitudes()
        if self.distribution == "lognormal":
            if scale == 0:
                return np.clip(np.full(x.shape, loc), lo, hi)
            z_lo = -math.inf if lo <= 0 else math.log(lo / loc) / scale
            z_hi = math.inf if hi == math.inf else math.log(hi / loc) / scale
            return loc * np.exp(scale * _truncated(x, z_lo, z_hi))
        z_lo, z_hi = (lo - loc) / scale, (hi - loc) / scale
        return loc + scale * _truncated(x, z_lo, z_hi)


def _truncated(x: np.ndarray, z_lo: float, z_hi: float) -> np.ndarray:
    """Standard normals ``x`` mapped onto N(0, 1) truncated to [z_lo, z_hi] by the quantile
    transform (monotone, so the copula's rank correlations are kept)."""
    if z_lo == -math.inf and z_hi == math.inf:
        return x
    from scipy.special import ndtr, ndtri  # here: scipy.special costs 0.2 s to import

    a, b = float(ndtr(z_lo)), float(ndtr(z_hi))
    u = a + ndtr(x) * (b - a)
    return ndtri(np.clip(u, max(a, 2.0 ** -53), min(b, 1.0 - 2.0 ** -53)))


def _continuous(name: str, *units: str) -> type[_Continuous]:
    """A continuous covariate whose quantities are in ``units``."""
    q = Qty(*units, gt=0)
    bound = Qty(*units, ge=0)
    return create_model(name, __base__=_Continuous, __module__=__name__,
                        mean=(q | None, None), sd=(q | None, None), median=(q | None, None),
                        lower=(bound | None, None), upper=(q | None, None))


WeightDistribution = _continuous("WeightDistribution", "kg")
AgeDistribution = _continuous("AgeDistribution", "year")
HeightDistribution = _continuous("HeightDistribution", "cm")
CreatinineDistribution = _continuous("CreatinineDistribution", "mg/dL", "umol/L")


class SexDistribution(_Section):
    """Sex: female with probability ``female_fraction``."""

    female_fraction: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class CovariateSpec(_Section):
    """Covariate distributions of a population; a covariate not given is the scenario's
    ``patient`` value for everyone."""

    weight: WeightDistribution | None = None  # type: ignore[valid-type]
    age: AgeDistribution | None = None  # type: ignore[valid-type]
    height: HeightDistribution | None = None  # type: ignore[valid-type]
    serum_creatinine: CreatinineDistribution | None = None  # type: ignore[valid-type]
    sex: SexDistribution | None = None

    def names(self) -> list[str]:
        """The covariates drawn, in the fixed order of their latent normals."""
        return [n for n in ("weight", "age", "height", "serum_creatinine", "sex")
                if getattr(self, n) is not None]


class CovarianceBlock(_Section):
    """A covariance matrix of η over ``parameters`` (NONMEM's $OMEGA BLOCK)."""

    parameters: list[str] = Field(min_length=1)
    matrix: list[list[Annotated[float, Field(allow_inf_nan=False)]]]

    @model_validator(mode="after")
    def _square(self) -> CovarianceBlock:
        n = len(self.parameters)
        if len(set(self.parameters)) != n:
            raise ValueError("parameters are listed twice")
        if len(self.matrix) != n or any(len(row) != n for row in self.matrix):
            raise ValueError(f"matrix must be {n} × {n}, one row and column per parameter")
        m = np.asarray(self.matrix)
        if not np.allclose(m, m.T, rtol=1e-12, atol=0):
            raise ValueError("matrix must be symmetric")
        if np.any(np.diag(m) < 0) or np.any(np.diag(m) > 9):
            raise ValueError("variances (the diagonal) must lie in [0, 9]")
        return self


def _pairs(mapping: dict[str, float], field: str) -> list[tuple[str, str, float, str]]:
    out = []
    for key, rho in mapping.items():
        parts = [p.strip() for p in key.split(",")]
        if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
            raise ValueError(f"{field}: key {key!r} must name two different entries as "
                             "'a, b'")
        out.append((parts[0], parts[1], rho, key))
    return out


class PopulationOutput(_Section):
    """What a population run keeps (``population.output``). The audits run on every patient
    at every solve time whatever is kept: a chunk is audited, and its metrics and band counts
    taken, before its curves are thinned.

    - ``curves``: ``all`` (every patient's curves, the default) or ``none`` (per-patient
      metrics only: parameters, covariates, NCA, the PTA inputs, the largest |ledger
      residual| — about 100 bytes per patient).
    - ``keep_curves``: keep the curves of a seeded random subset of this many patients
      (drawn once from the run's seed; the same whatever the chunking).
    - ``every``: keep curves on a coarser grid, every ``every`` (a multiple of the output
      step ``time.output_every`` or ``time.step``).
    - ``bands``: percentile bands of the summary curve, computed while the chunks run, on the
      full solve grid (:mod:`medtransport.bands`: exact histograms on a fixed logarithmic
      grid, relative error ≤ 2⁻⁸); ``true`` by default.
    """

    curves: Literal["all", "none"] = "all"
    keep_curves: Annotated[int, Field(ge=1, le=MAX_PATIENTS, strict=True)] | None = None
    every: Qty("s", gt=0) | None = None  # type: ignore[valid-type]
    bands: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> PopulationOutput:
        if self.curves == "none" and self.keep_curves is not None:
            raise ValueError("keep_curves keeps some curves, curves: none keeps none; give "
                             "one of them")
        if self.curves == "none" and self.every is not None:
            raise ValueError("every sets the grid of the curves kept, and curves: none keeps "
                             "none; give one of them")
        return self

    @property
    def keeps_all(self) -> bool:
        """Whether this is today's store: every curve at every output time."""
        return self.curves == "all" and self.keep_curves is None and self.every is None

    def curve_patients(self, size: int, seed: int) -> np.ndarray | None:
        """The sorted ids of the patients whose curves are kept (None: all of them)."""
        if self.curves == "none":
            return np.zeros(0, dtype=np.int64)
        if self.keep_curves is None or self.keep_curves >= size:
            return None
        # its own stream (seed, 1): the patients' draws use stream (seed) alone
        rng = np.random.Generator(np.random.PCG64([seed, 1]))
        return np.sort(rng.choice(size, self.keep_curves, replace=False)).astype(np.int64)


class PopulationSpec(_Section):
    """The ``population`` section: ``size`` virtual patients (required for virtual patients;
    a model that runs a data set's subjects may take it from the data); log-normal variability
    ``variability: {parameter: ω}`` (ω = SD of the log), ``correlations: {"a, b": ρ}`` between
    them or a ``covariance`` block; covariate distributions ``covariates`` with
    ``covariate_correlations`` (Gaussian copula); what a run keeps, ``output``; for a data
    set, ``replicates`` of its subjects."""

    size: Annotated[int, Field(ge=1, le=MAX_PATIENTS, strict=True)] | None = None
    variability: dict[str, _Omega] = Field(default_factory=dict)
    correlations: dict[str, _Rho] = Field(default_factory=dict)
    covariance: CovarianceBlock | None = None
    covariates: CovariateSpec | None = None
    covariate_correlations: dict[str, _Rho] = Field(default_factory=dict)
    output: PopulationOutput = Field(default_factory=PopulationOutput)
    #: With a data set of S subjects: ``replicates`` copies of every subject's regimen and
    #: records, each with its own η (a VPC's simulations); patient i is replicate ⌊i/S⌋ of
    #: subject i mod S, so ``size`` = replicates·S and chunks cut across replicates as for
    #: virtual patients.
    replicates: Annotated[int, Field(ge=1, le=MAX_PATIENTS, strict=True)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PopulationSpec:
        problems = []
        if self.covariance is not None:
            both = sorted(set(self.covariance.parameters) & set(self.variability))
            if both:
                problems.append(f"{', '.join(both)} given both in variability and in "
                                "covariance")
        names = set(self.eta_names())
        for a, b, _, key in _pairs(self.correlations, "correlations"):
            missing = [p for p in (a, b) if p not in names]
            if missing:
                problems.append(f"correlations[{key!r}]: {', '.join(missing)} has no "
                                "variability")
        cov = self.covariates.names() if self.covariates else []
        for a, b, _, key in _pairs(self.covariate_correlations, "covariate_correlations"):
            missing = [p for p in (a, b) if p not in cov]
            if missing:
                problems.append(f"covariate_correlations[{key!r}]: {', '.join(missing)} has "
                                "no distribution in covariates")
        if problems:
            raise ValueError("; ".join(problems))
        try:
            self.eta_factor()
        except np.linalg.LinAlgError:
            raise ValueError("the correlations (or covariance) of the variability are not "
                             "positive definite") from None
        try:
            self.covariate_factor()
        except np.linalg.LinAlgError:
            raise ValueError("covariate_correlations are not positive definite") from None
        return self

    def eta_names(self) -> list[str]:
        """The parameters with variability, sorted (the order of their draws)."""
        block = self.covariance.parameters if self.covariance is not None else []
        return sorted({*self.variability, *block})

    def omegas(self) -> dict[str, float]:
        out = dict(self.variability)
        if self.covariance is not None:
            diag = np.diag(np.asarray(self.covariance.matrix, dtype=float))
            out.update(zip(self.covariance.parameters, np.sqrt(diag).tolist(), strict=True))
        return out

    def _eta_correlation(self) -> np.ndarray | None:
        names = self.eta_names()
        index = {n: i for i, n in enumerate(names)}
        r = np.eye(len(names))
        correlated = False
        for a, b, rho, _ in _pairs(self.correlations, "correlations"):
            r[index[a], index[b]] = r[index[b], index[a]] = rho
            correlated = correlated or rho != 0
        if self.covariance is not None:
            m = np.asarray(self.covariance.matrix, dtype=float)
            sd = np.sqrt(np.diag(m))
            for i, a in enumerate(self.covariance.parameters):
                for j, b in enumerate(self.covariance.parameters):
                    if i != j and m[i, j] != 0:
                        if sd[i] == 0 or sd[j] == 0:
                            raise np.linalg.LinAlgError("covariance with a zero variance")
                        r[index[a], index[b]] = m[i, j] / (sd[i] * sd[j])
                        correlated = True
        return r if correlated else None

    def eta_factor(self) -> np.ndarray | None:
        """L with R = L·Lᵀ for the η correlations, or None when they are independent."""
        r = self._eta_correlation()
        return None if r is None else _cholesky(r)

    def covariate_factor(self) -> np.ndarray | None:
        if not self.covariate_correlations or self.covariates is None:
            return None
        names = self.covariates.names()
        index = {n: i for i, n in enumerate(names)}
        r = np.eye(len(names))
        for a, b, rho, _ in _pairs(self.covariate_correlations, "covariate_correlations"):
            r[index[a], index[b]] = r[index[b], index[a]] = rho
        return _cholesky(r)

    @property
    def draws_per_patient(self) -> int:
        return len(self.eta_names()) + (len(self.covariates.names()) if self.covariates else 0)


def _cholesky(r: np.ndarray) -> np.ndarray:
    # numpy's cholesky accepts semi-definite matrices with round-off; demand a margin.
    if np.min(np.linalg.eigvalsh(r)) <= 1e-10:
        raise np.linalg.LinAlgError("not positive definite")
    return np.linalg.cholesky(r)


def standard_normals(seed: int, k: int, start: int, stop: int) -> np.ndarray:
    """(stop − start, k) standard normals of patients ``start`` … ``stop − 1``: patient i's
    j-th is draw i·k + j of a PCG64 stream, so any block equals the same rows of the whole."""
    if k == 0 or stop <= start:
        return np.zeros((max(stop - start, 0), k))
    bits = np.random.PCG64(seed)
    bits.advance(start * k)
    u = np.random.Generator(bits).random((stop - start, k))
    from scipy.special import ndtri

    # keep away from 0, where the inverse CDF is −∞
    return ndtri(np.clip(u, 2.0 ** -53, 1.0 - 2.0 ** -53))


def sample_etas(seed: int, names: list[str], omegas: list[float], start: int,
                stop: int) -> dict[str, np.ndarray]:
    """η of patients ``start`` to ``stop − 1`` for each named parameter (ω·z, z standard
    normal, independent), identical whatever block the patients are sampled in."""
    z = standard_normals(seed, len(names), start, stop)
    return {name: omega * z[:, j] for j, (name, omega) in enumerate(zip(names, omegas,
                                                                        strict=True))}


@dataclass
class PatientBatch:
    """Covariates of a block of patients, arrays over patients, with the same attributes as
    :class:`medtransport.scenario.Patient` (quantities with units) — so covariate models work
    on one patient or many alike."""

    weight: pint.Quantity
    age: pint.Quantity | None = None
    height: pint.Quantity | None = None
    serum_creatinine: pint.Quantity | None = None
    female: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(np.size(self.weight.magnitude))

    @property
    def sex(self) -> np.ndarray | None:
        return None if self.female is None else np.where(self.female, "female", "male")

    def _need(self, *names: str) -> None:
        from medtransport.errors import ScenarioError

        missing = [n for n in names if getattr(self, "female" if n == "sex" else n) is None]
        if missing:
            raise ScenarioError([(f"patient.{n}", "required for this derived quantity (give "
                                  f"it in patient or population.covariates.{n})")
                                 for n in missing])

    @property
    def creatinine_clearance(self) -> pint.Quantity:
        """Cockcroft & Gault (Nephron 1976;16:31), per patient:
        CrCl = (140 − age)·weight/(72·SCr) × 0.85 if female [mL/min, y, kg, mg/dL]."""
        self._need("age", "sex", "serum_creatinine")
        assert self.age is not None and self.serum_creatinine is not None
        assert self.female is not None
        scr = self.serum_creatinine
        scr_mgdl = scr.m_as("mg/dL") if scr.check("[mass]/[length]**3") else \
            (scr * Q_(113.12, "g/mol")).m_as("mg/dL")
        crcl = (140.0 - self.age.m_as("year")) * self.weight.m_as("kg") / (72.0 * scr_mgdl)
        return Q_(crcl * np.where(self.female, 0.85, 1.0), "mL/min")

    def variables(self) -> dict[str, tuple[np.ndarray, str]]:
        """Name → (values over patients, unit) of every covariate known."""
        out: dict[str, tuple[np.ndarray, str]] = {"weight": (self.weight.m_as("kg"), "kg")}
        for name, unit in (("age", "year"), ("height", "cm")):
            q = getattr(self, name)
            if q is not None:
                out[name] = (q.m_as(unit), unit)
        if self.serum_creatinine is not None:
            out["serum_creatinine"] = (np.asarray(self.serum_creatinine.magnitude),
                                       format(self.serum_creatinine.units, "~C"))
        if self.female is not None:
            out["female"] = (self.female.astype(np.int8), "1")
        try:
            out["creatinine_clearance"] = (self.creatinine_clearance.m_as("mL/min"), "mL/min")
        except Exception:  # not every covariate needed is known
            pass
        return out


@dataclass
class PopulationSample:
    """What :func:`sample_population` draws for patients [start, stop)."""

    start: int
    stop: int
    etas: dict[str, np.ndarray]
    covariates: PatientBatch | None


def sample_population(spec: PopulationSpec, seed: int, start: int, stop: int,
                      patient: Any = None) -> PopulationSample:
    """η and covariates of patients ``start`` … ``stop − 1``; ``patient`` (the scenario's)
    supplies every covariate without a distribution."""
    names = spec.eta_names()
    cov_names = spec.covariates.names() if spec.covariates is not None else []
    z = standard_normals(seed, len(names) + len(cov_names), start, stop)
    omegas = spec.omegas()
    factor = spec.eta_factor()
    ze = z[:, :len(names)]
    if factor is not None:
        ze = _lower_times(factor, ze)
    etas = {name: omegas[name] * ze[:, j] for j, name in enumerate(names)}
    covariates = None
    if cov_names:
        assert spec.covariates is not None
        x = z[:, len(names):]
        cfactor = spec.covariate_factor()
        if cfactor is not None:
            x = _lower_times(cfactor, x)
        covariates = _covariates(spec.covariates, cov_names, x, patient, stop - start)
    return PopulationSample(start, stop, etas, covariates)


def _lower_times(factor: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Rows of ``z`` times ``factorᵀ``, by element-wise products summed in a fixed order: a
    BLAS product rounds differently with the number of rows, which would make a patient's
    draws depend on the size of its chunk."""
    out = np.zeros_like(z)
    for j in range(factor.shape[0]):
        for k in range(j + 1):
            if factor[j, k] != 0.0:
                out[:, j] += factor[j, k] * z[:, k]
    return out


def _covariates(spec: CovariateSpec, names: list[str], x: np.ndarray, patient: Any,
                n: int) -> PatientBatch:
    from medtransport.errors import ScenarioError

    values: dict[str, Any] = {}
    for j, name in enumerate(names):
        dist = getattr(spec, name)
        if name == "sex":
            from scipy.special import ndtr

            values["female"] = ndtr(x[:, j]) > 1.0 - dist.female_fraction
            continue
        unit = (dist.mean if dist.distribution == "normal" else dist.median).units
        values[name] = Q_(dist.quantile(x[:, j]), unit)

    def base(name: str) -> Any:
        value = None if patient is None else getattr(patient, name, None)
        if value is None:
            return None
        return Q_(np.full(n, float(value.magnitude)), value.units)

    if "weight" not in values:
        w = base("weight")
        if w is None:
            raise ScenarioError([("population.covariates.weight",
                                  "needed: the scenario has no patient weight")])
        values["weight"] = w
    for name in ("age", "height", "serum_creatinine"):
        if name not in values:
            values[name] = base(name)
    if "female" not in values and patient is not None and patient.sex is not None:
        values["female"] = np.full(n, patient.sex == "female")
    return PatientBatch(**values)


def lognormal_median_ratio(omega: float) -> float:
    """E[exp(η)] = exp(ω²/2): the mean of a log-normal parameter over its median."""
    return math.exp(0.5 * omega * omega)


def chunk_bounds(size: int, chunk: int) -> Iterable[tuple[int, int, int]]:
    """(index, start, stop) of the chunks of ``chunk`` patients covering ``size``."""
    for i, start in enumerate(range(0, size, chunk)):
        yield i, start, min(start + chunk, size)
