"""onnxruntime sessions built deliberately: providers, threads, memory arena, strictness.

onnxruntime silently falls back to CPU when a requested provider cannot load; a kiosk
vendor who paid for a GPU wants to know. ``strict_providers=True`` turns that into
:class:`ProviderUnavailableError`; otherwise the fallback is logged as a warning.
Provider names may be given short (``cpu``, ``cuda``, ``tensorrt``, ``openvino``,
``coreml``, ``directml``/``dml``) wherever providers are accepted: nobody should have to
remember that DirectML's provider is ``DmlExecutionProvider``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Sequence
from typing import Any, Final

import onnxruntime as ort

from .bundle.manifest import ModelSpec
from .errors import BundleError, InvalidArgumentError, ProviderUnavailableError

__all__ = [
    "PROVIDER_ALIASES",
    "available_providers",
    "check_providers",
    "create_session",
    "install_hint",
    "providers_from_env",
    "resolve_provider_name",
    "threads_from_env",
]

log = logging.getLogger("pillsnap_sdk")

ProviderArg = str | tuple[str, dict[str, Any]]


#: Short provider names (case-insensitive) and the onnxruntime provider each stands for.
PROVIDER_ALIASES: Final[dict[str, str]] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
}


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def resolve_provider_name(name: str) -> str:
    """``"openvino"`` -> ``"OpenVINOExecutionProvider"``; full names pass through.

    Short names and full names are matched case-insensitively (``"CUDA"``,
    ``"cudaexecutionprovider"``); anything else is a typo and raises
    :class:`InvalidArgumentError` listing every accepted name, before any model loads.
    """
    alias = PROVIDER_ALIASES.get(name.strip().lower())
    if alias is not None:
        return alias
    known: list[str] = [str(k) for k in ort.get_all_providers()]
    by_lower = {k.lower(): k for k in known}
    full = by_lower.get(name.strip().lower())
    if full is not None:
        return full
    raise InvalidArgumentError(
        f"unknown onnxruntime execution provider name {name!r}; use a short name "
        f"({', '.join(sorted(PROVIDER_ALIASES))}) or a name this onnxruntime knows "
        f"({', '.join(sorted(known))})"
    )


#: The onnxruntime wheel that carries each accelerator's provider. The stock
#: ``onnxruntime`` wheel has only the CPU one (plus CoreML on macOS, Azure).
_PROVIDER_WHEELS: Final[dict[str, str]] = {
    "CUDAExecutionProvider": "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "DmlExecutionProvider": "onnxruntime-directml",
    "ROCMExecutionProvider": "onnxruntime-rocm",
    "MIGraphXExecutionProvider": "onnxruntime-migraphx",
    "QNNExecutionProvider": "onnxruntime-qnn",
}

#: pillsnap extras that pull a provider wheel (the others are installed by hand).
_EXTRAS: Final[dict[str, str]] = {"onnxruntime-gpu": "gpu", "onnxruntime-openvino": "openvino"}

#: What else a provider needs besides its wheel.
_NEEDS: Final[dict[str, str]] = {
    "CUDAExecutionProvider": "the CUDA and cuDNN versions that onnxruntime-gpu release "
    "needs, and an NVIDIA driver",
    "TensorrtExecutionProvider": "NVIDIA TensorRT, CUDA and cuDNN libraries on the library path",
    "OpenVINOExecutionProvider": "an x86-64 CPU, Intel GPU or NPU (OpenVINO ships inside "
    "the wheel)",
    "DmlExecutionProvider": "Windows with DirectX 12",
    "ROCMExecutionProvider": "the AMD ROCm stack",
    "MIGraphXExecutionProvider": "the AMD ROCm stack",
    "QNNExecutionProvider": "a Qualcomm SoC",
}


def _installed_onnxruntimes() -> dict[str, str]:
    """The onnxruntime distributions installed beside each other, name -> version."""
    out: dict[str, str] = {}
    for name in ("onnxruntime", *sorted(set(_PROVIDER_WHEELS.values()))):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def install_hint(provider: str) -> str:
    """What to install so that ``provider`` is available, for error messages.

    Every onnxruntime wheel installs the same ``onnxruntime/`` folder, so pip puts a
    provider wheel *beside* the stock one (pillsnap depends on ``onnxruntime``) and
    whichever wrote last is loaded. The replacement is therefore three steps, and when
    the provider's wheel is installed but shadowed the hint says exactly that.
    """
    if provider == "CoreMLExecutionProvider":
        return "use the standard onnxruntime wheel on macOS"
    wheel = _PROVIDER_WHEELS.get(provider)
    if wheel is None:
        return "install the onnxruntime build that includes it, and its drivers"
    needs = _NEEDS[provider]
    installed = _installed_onnxruntimes()
    others = sorted(n for n in installed if n != wheel)
    if wheel in installed and others and provider not in available_providers():
        return (
            f"{wheel} {installed[wheel]} is installed but so is {', '.join(others)}; they "
            f"share the onnxruntime/ folder and the other's files are loaded: "
            f"pip uninstall -y {' '.join(others)} && "
            f"pip install --force-reinstall --no-deps '{wheel}=={installed[wheel]}'; "
            f"it also needs {needs}"
        )
    extra = _EXTRAS.get(wheel)
    first = f"pip install 'pillsnap[{extra}]'" if extra else f"pip install {wheel}"
    return (
        f"{first} && pip uninstall -y onnxruntime && "
        f"pip install --force-reinstall --no-deps {wheel} ({wheel} replaces onnxruntime: "
        f"both install the same onnxruntime/ folder); it also needs {needs}"
    )


def providers_from_env() -> list[str] | None:
    """``$PILLSNAP_PROVIDERS`` (comma-separated provider names), or None when unset.

    Lets an operator move a deployed service to the GPU without a code change; names are
    checked and resolved (short names too) like the ``providers=`` argument, and a bad one
    is reported as this variable's fault, since no code names it.
    """
    raw = os.environ.get("PILLSNAP_PROVIDERS", "").strip()
    if not raw:
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names:
        raise InvalidArgumentError(
            f"PILLSNAP_PROVIDERS={raw!r} names no provider; e.g. 'cuda,cpu' or "
            "'CUDAExecutionProvider,CPUExecutionProvider'"
        )
    try:
        return [resolve_provider_name(n) for n in names]
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"PILLSNAP_PROVIDERS={raw!r}: {exc}") from None


def max_intra_op_threads() -> int:
    """The most intra-op threads a model may ask for: 4x the CPUs this process may use
    (at least 8).

    Why a cap: onnxruntime starts every requested thread up front, each with its own
    stack, so a typo (``--threads 100000``) took 30 s and 2 GB before crashing the process
    with SIGSEGV; more threads than cores never made a model faster.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(8, 4 * cpus)


def check_threads(value: object, name: str = "intra_op_threads") -> int | None:
    """``value`` as a thread count (None: onnxruntime's default), or InvalidArgumentError."""
    if value is None:
        return None
    cap = max_intra_op_threads()
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= cap:
        raise InvalidArgumentError(
            f"{name} must be an int from 1 to {cap} (4x this machine's CPUs, at least 8), "
            f"or None for onnxruntime's default; got {value!r}"
        )
    return value


def threads_from_env() -> int | None:
    """``$PILLSNAP_THREADS`` (onnxruntime intra-op threads per model), or None when unset."""
    raw = os.environ.get("PILLSNAP_THREADS", "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
        raise InvalidArgumentError(f"PILLSNAP_THREADS must be a positive integer, got {raw!r}")
    return check_threads(int(raw), "PILLSNAP_THREADS")


def _hints(names: list[str]) -> str:
    return "; ".join(f"{n}: {install_hint(n)}" for n in names)


def _provider_name(p: ProviderArg) -> str:
    return p if isinstance(p, str) else p[0]


def create_session(
    model_bytes: bytes,
    spec: ModelSpec,
    *,
    providers: Sequence[ProviderArg] | None,
    intra_op_threads: int | None,
    strict_providers: bool,
    dynamic_batch: bool,
) -> ort.InferenceSession:
    """Build one session from verified bytes and check its input against the manifest.

    ``dynamic_batch`` models (the classifier, fed 1..16 crops) run without memory
    patterns, which only pay off for one fixed shape; the CPU arena stays on for both
    models (its peak is bounded by the pipeline's chunking; soak-tested flat).
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    threads = check_threads(intra_op_threads)
    if threads is not None:
        opts.intra_op_num_threads = threads
    # Spinning intra-op threads burn the cores the *other* stage (and the caller's other
    # threads) need; measured on 2 cores: 22-pill photo 1285 -> 1032 ms with spinning off.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if dynamic_batch:
        # Memory patterns assume one input shape; the arena stays on (1117 vs 1285 ms) and
        # its high-water mark is bounded because the pipeline feeds at most
        # CLASSIFIER_CHUNK crops per run.
        opts.enable_mem_pattern = False
    opts.log_severity_level = 3
    requested = check_providers(providers)
    usable = _usable_providers(requested, spec, strict_providers)
    try:
        session = ort.InferenceSession(model_bytes, sess_options=opts, providers=usable)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise BundleError(f"{spec.file}: onnxruntime cannot load the model: {exc}") from exc
    active = session.get_providers()
    # Available but not active: the provider failed to initialise (drivers, CUDA libs).
    missing = [_provider_name(p) for p in usable if _provider_name(p) not in active]
    if missing:
        msg = (
            f"{spec.file}: requested provider(s) {missing} not active (running on {active}); "
            f"its libraries or drivers failed to load. To fix: {_hints(missing)}"
        )
        if strict_providers:
            raise ProviderUnavailableError(msg)
        log.warning(msg)
    _check_input(session, spec)
    check_output(session, spec)
    return session


def check_providers(providers: object) -> list[ProviderArg]:
    """``None`` or a list/tuple of names or ``(name, options)`` pairs, nothing else;
    returned with every name resolved to onnxruntime's (see :func:`resolve_provider_name`).

    A bare string would be iterated letter by letter, and a ``None`` or number inside the
    list reached onnxruntime as a raw ``TypeError``. Names are resolved here, before the
    bundle loads, so a typo costs no model load.
    """
    if providers is None:
        return ["CPUExecutionProvider"]
    if not isinstance(providers, (list, tuple)):
        raise InvalidArgumentError(
            f"providers must be a list such as ['CPUExecutionProvider'], got "
            f"{type(providers).__name__} {providers!r:.80}"
        )
    out: list[ProviderArg] = []
    for p in providers:
        if isinstance(p, str):
            out.append(resolve_provider_name(p))
        elif (
            isinstance(p, tuple)
            and len(p) == 2
            and isinstance(p[0], str)
            and isinstance(p[1], dict)
            and all(isinstance(k, str) for k in p[1])
        ):
            out.append((resolve_provider_name(p[0]), dict(p[1])))
        else:
            raise InvalidArgumentError(
                f"each provider must be a name or a (name, options dict) pair, got {p!r:.80}"
            )
    # "cpu" and "CPUExecutionProvider" in one list are one provider; onnxruntime refuses
    # duplicates with a raw error.
    unique: list[ProviderArg] = []
    for p in out:
        if _provider_name(p) not in {_provider_name(u) for u in unique}:
            unique.append(p)
    return unique or ["CPUExecutionProvider"]


def _usable_providers(
    requested: list[ProviderArg], spec: ModelSpec, strict: bool
) -> list[ProviderArg]:
    """Drop (or, strict, refuse) providers this onnxruntime build lacks.

    Left to onnxruntime, an unavailable provider is dropped with a bare UserWarning and a
    misspelt one makes it print an "EP Error" to stdout and build the session twice, both
    ending on CPU; misspelt names never get here (:func:`check_providers`), and deciding
    here gives one typed error or one logged warning that says what to do.
    """
    available = set(available_providers())
    absent = [_provider_name(p) for p in requested if _provider_name(p) not in available]
    if absent:
        msg = (
            f"{spec.file}: requested provider(s) {absent} not available in this onnxruntime "
            f"build (available: {sorted(available)}). To install: {_hints(absent)}"
        )
        if strict:
            raise ProviderUnavailableError(msg)
        log.warning(
            "%s; falling back to CPUExecutionProvider (strict_providers=True makes this an error)",
            msg,
        )
    usable = [p for p in requested if _provider_name(p) in available]
    return usable or ["CPUExecutionProvider"]


def _check_input(session: ort.InferenceSession, spec: ModelSpec) -> None:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise BundleError(f"{spec.file}: expected 1 input, the model has {len(inputs)}")
    inp = inputs[0]
    if inp.name != spec.input_name:
        raise BundleError(
            f"{spec.file}: input is named {inp.name!r}, manifest says {spec.input_name!r}"
        )
    if inp.type != "tensor(float)":
        raise BundleError(f"{spec.file}: input must be float32, the model takes {inp.type}")
    shape = list(inp.shape)
    want = spec.input_shape
    ok = len(shape) == len(want) == 4 and all(
        isinstance(w, str) or s == w for s, w in zip(shape, want, strict=True)
    )
    h, w = spec.preprocessing.size
    if ok and not (shape[2] in (h, None) or isinstance(shape[2], str)):
        ok = False
    if ok and isinstance(want[0], str) and isinstance(shape[0], int):
        # A manifest batch "N" over a model exported for a fixed batch loaded, verified
        # and named one-pill photos, then failed every photo with two pills or more.
        raise BundleError(
            f"{spec.file}: the manifest declares a dynamic batch ({want[0]!r}) but the "
            f"model only takes batches of {shape[0]}; declare input_shape[0] = {shape[0]} "
            "or export the model with a dynamic batch axis"
        )
    if not ok or want[2:] != [h, w]:
        raise BundleError(
            f"{spec.file}: model input shape {shape} disagrees with the manifest "
            f"{want} / preprocessing size {(h, w)}"
        )


def check_output(session: ort.InferenceSession, spec: ModelSpec) -> None:
    """The first output must have the shape its declared ``output_format`` implies.

    A re-sealed bundle with the classifier declared as the detector used to load and then
    raise a raw ``ValueError`` on every call; now it is refused here, at load, and by
    ``pillsnap bundle verify``. (The classifier's class count is checked by the pipeline.)
    """
    outputs = session.get_outputs()
    if not outputs:
        raise BundleError(f"{spec.file}: the model has no outputs")
    out = outputs[0]
    shape = list(out.shape)
    if out.type != "tensor(float)":
        raise BundleError(f"{spec.file}: output must be float32, the model gives {out.type}")
    if spec.output_format == "yolo_cxcywh":
        ok = len(shape) == 3 and (isinstance(shape[0], str) or shape[0] in (1, None))
        ok = ok and (not isinstance(shape[1], int) or shape[1] >= 5)
        what = "[1, 4+classes, anchors]"
    else:
        ok = len(shape) == 2
        what = "[N, classes]"
    if not ok:
        raise BundleError(
            f"{spec.file}: output shape {shape} does not fit output_format "
            f"{spec.output_format!r} ({what}); is this the right model?"
        )
