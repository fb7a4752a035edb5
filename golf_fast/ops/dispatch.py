"""Op registration and backend dispatch, shared by every kernel family.

A family builds one :class:`KernelOp` per public op::

    op = KernelOp("pack_int6", pack_int6_ref, fake=_pack_int6_fake,
                  selfcheck_inputs=..., compare=exact_match)
    op.add_backend("triton", "cuda", pack_int6_triton, available=triton_on_cuda)
    op.add_backend("cpp", "cpu", pack_int6_cpp, available=ext_loaded)

and its public function calls ``op(*args, backend=..., fallback=...)`` after checking inputs.

What the op does:

* ``torch.library``: ``golf_fast::<name>`` is defined with ``torch.library.custom_op``; the eager
  reference is its default kernel, ``fake`` its meta implementation; its CUDA and CPU kernels run
  the backend ``backend="auto"`` resolves for the device (on CPU: the C++ kernel where one is
  registered, the Triton kernel under ``TRITON_INTERPRET=1``, else the reference), so a call that
  goes through the dispatcher (a gradient, ``torch.compile``) runs the same kernel as the eager path. So the op traces under ``torch.compile(fullgraph=True)``
  and passes ``torch.library.opcheck``. C++/CUDA kernels of ``golf_fast._C`` are registered as
  private ops (``golf_fast::_<name>_cpp``) and added here as backends; public ops are defined once,
  in Python.
* Backend choice per device type: ``backend="auto"`` takes the first available backend added for
  the tensors' device type (in the order added; when it is not the first, the reasons the earlier
  ones were passed over are logged, as a warning on CUDA), else the reference on CPU. On CUDA a missing
  kernel is an error naming why it is missing, unless ``fallback="reference"`` was asked for;
  an explicitly requested backend that is unavailable is always an error unless
  ``fallback="reference"``. The resolved backend is logged once per (op, device type, backend)
  on the ``golf_fast.ops`` logger; :func:`resolved_backends` gives, per (op, device type), the
  backend of the latest call (updated on every call, so it reports what ran).
* GPU self-check: the first call of a GPU backend per (device, dtype) (and of a Triton kernel run
  by the interpreter on CPU tensors) runs the kernel and the
  reference on a small random input (``selfcheck_inputs``) and raises
  :class:`KernelSelfCheckError` with both numbers if ``compare`` reports a mismatch. Opt out with
  ``config.selfcheck = False`` or ``with selfcheck_disabled():`` (benchmarks). The inputs are
  drawn on the CPU from a fixed seed (no random state of the user's, CPU or CUDA, moves) and
  moved to the device; the reference runs under :func:`precise_reference` (TF32 off, fp32 matmul
  precision "highest"), whatever the user's global settings. A self-check cannot run inside
  CUDA-graph capture: a first call there raises :class:`SelfCheckDuringCaptureError`, which says
  to run one eager call (or :meth:`KernelOp.precheck`) before capturing.
* Eager mode runs what was asked for: outside ``torch.compile`` the resolved implementation is
  called directly (skipping the dispatcher's tens of microseconds per call). When a gradient is
  needed through an op with autograd, the same resolved implementation runs inside a
  ``torch.autograd.Function`` whose backward is the op's registered backward; kernels of other
  ops called from that backward (``torch.ops.golf_fast.*``) resolve with the same ``backend`` /
  ``fallback`` request where they have such a backend. So ``backend="reference"`` on CUDA runs
  the reference, forward and backward, ``fallback="reference"`` works with gradients, and
  ``backend="triton"`` on CPU without the interpreter raises whether or not autograd is on.
  The registered op (``torch.ops.golf_fast.<name>``, with ``backend="auto"``) is the path of
  compiled graphs. A backend added with ``native_autograd=True`` (a ``"composite"`` of PyTorch ops,
  the CPU choice of ``auto`` where it beats the precise reference) is called directly with its own
  gradient.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import torch

from golf_fast._availability import load_extension, triton_status
from golf_fast.ops.triton_support import interpreter_enabled

log = logging.getLogger("golf_fast.ops")

REFERENCE = "reference"
Availability = Callable[[], Optional[str]]  # returns None when available, else the reason it is not


class BackendUnavailableError(RuntimeError):
    """A requested kernel cannot run here (and no fallback was asked for)."""


class KernelSelfCheckError(RuntimeError):
    """A GPU kernel disagreed with its reference on the first-use self-check."""


class SelfCheckDuringCaptureError(RuntimeError):
    """A kernel's first use (its self-check) happened inside CUDA-graph capture."""


@contextlib.contextmanager
def precise_reference() -> Iterator[None]:
    """fp32 matmuls at full precision for the duration (TF32 off for matmul and cuDNN, float32 matmul
    precision "highest"); the user's settings are restored afterwards. Self-check references run here:
    with TF32 on (as parameter-golf scripts set it) a reference's fp32 matmul rounds its inputs to
    10 mantissa bits and would disagree with a correct kernel."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
           torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old[0], old[1]
        torch.set_float32_matmul_precision(old[2])


def capturing(device: torch.device) -> bool:
    """Whether the current CUDA stream of ``device`` is capturing a CUDA graph (False off CUDA)."""
    if device.type != "cuda":
        return False
    try:
        return bool(torch.cuda.is_current_stream_capturing())
    except RuntimeError:  # a torch build without CUDA: nothing can be capturing
        return False


def refuse_selfcheck_in_capture(what: str, device: torch.device) -> None:
    """Raise :class:`SelfCheckDuringCaptureError` when a self-check of ``what`` would run in capture."""
    if capturing(device):
        raise SelfCheckDuringCaptureError(
            f"{what}: the first use on {device} runs a self-check against the reference, which cannot run "
            f"inside CUDA-graph capture. Run one eager call with the same shapes and dtypes before capturing "
            f"(for a registered op, KernelOp.precheck(device, dtypes) runs its self-check); "
            f"torch.compile(mode='reduce-overhead') does this in its warm-up.")


def seeded_cpu_inputs(make: Callable[[torch.device, torch.dtype], tuple], device: torch.device,
                      dtype: torch.dtype, seed: int = 1234) -> tuple:
    """``make(cpu, dtype)`` under a fixed seed with the CPU random state restored afterwards, each tensor
    then moved to ``device``: the CUDA random state is never touched, the CPU one is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        args = make(torch.device("cpu"), dtype)
    return tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)


@dataclass
class DispatchConfig:
    """Process-wide dispatch settings (typed; no environment variables)."""

    selfcheck: bool = True
    """Run the first-use GPU self-check of every kernel (turn off only for benchmarks)."""


config = DispatchConfig()


@contextlib.contextmanager
def selfcheck_disabled() -> Iterator[None]:
    """Temporarily turn off the GPU self-check (for benchmarks that time first calls)."""
    old, config.selfcheck = config.selfcheck, False
    try:
        yield
    finally:
        config.selfcheck = old


COMPOSITE = "composite"
"""The conventional name of a CPU backend made of plain PyTorch ops (the code a record script writes
inline, or the same math with fewer passes), with its own gradient (PyTorch's autograd of those ops,
or an ``autograd.Function`` of its own): what ``auto`` picks on CPU where it is faster than the op's
precise reference."""


@dataclass(frozen=True)
class Backend:
    name: str
    device_type: str
    fn: Callable[..., Any]
    available: Availability
    selfcheck: bool
    native_autograd: bool = False
    """``fn`` carries its own gradient (differentiable PyTorch ops, or an ``autograd.Function``): eager
    calls that need a gradient call it directly instead of going through the op's registered backward."""


@dataclass
class _Registry:
    resolved: dict[tuple[str, str], str] = field(default_factory=dict)
    logged: set[tuple[str, str, str]] = field(default_factory=set)
    checked: set[tuple[str, str, str, str]] = field(default_factory=set)


_registry = _Registry()


def resolved_backends() -> dict[str, str]:
    """``{"pack_int6@cuda": "triton", ...}``: for every op called so far in this process, the backend its
    latest call on each device type ran (a call with ``backend="reference"`` shows as ``reference``
    until the next ``auto`` call shows what that one ran)."""
    return {f"{op}@{dev}": b for (op, dev), b in sorted(_registry.resolved.items())}


def always_available() -> Optional[str]:
    return None


def triton_on_cuda() -> Optional[str]:
    """Availability of a Triton backend for CUDA tensors."""
    ok, why = triton_status()
    if not ok:
        return why
    return None if torch.cuda.is_available() else "no CUDA device"


def triton_in_interpreter() -> Optional[str]:
    """Availability of a Triton backend for CPU tensors (the interpreter)."""
    ok, why = triton_status()
    if not ok:
        return why
    return None if interpreter_enabled() else "Triton on CPU tensors needs TRITON_INTERPRET=1"


def ext_loaded() -> Optional[str]:
    """Availability of a golf_fast._C backend."""
    ok, why = load_extension()
    return None if ok else why


# --------------------------------------------------------------------------- comparisons


def exact_match(out: torch.Tensor, ref: torch.Tensor) -> Optional[str]:
    """Self-check comparison for integer outputs: bit-identical or a description of the mismatch."""
    if out.shape != ref.shape or out.dtype != ref.dtype:
        return f"output {tuple(out.shape)} {out.dtype} vs reference {tuple(ref.shape)} {ref.dtype}"
    diff = (out.to(torch.int64) - ref.to(torch.int64)).abs()
    bad = int((diff != 0).sum())
    if bad:
        return f"{bad} of {ref.numel()} elements differ (max |difference| {int(diff.max())}, expected 0)"
    return None


def relative_error_within(tol: float) -> Callable[[torch.Tensor, torch.Tensor], Optional[str]]:
    """Self-check comparison for float outputs: ``‖out − ref‖_F / ‖ref‖_F ≤ tol``."""

    def compare(out: torch.Tensor, ref: torch.Tensor) -> Optional[str]:
        if out.shape != ref.shape:
            return f"output shape {tuple(out.shape)} vs reference {tuple(ref.shape)}"
        o, r = out.double(), ref.double()
        if not torch.isfinite(o).all():
            return "kernel output has NaN/inf"
        err = float((o - r).norm() / r.norm().clamp_min(1e-30))
        return None if err <= tol else f"relative Frobenius error {err:.3e} > tolerance {tol:.3e}"

    return compare


# --------------------------------------------------------------------------- the op


def _tensors(args: Sequence[Any]) -> list[torch.Tensor]:
    return [a for a in args if isinstance(a, torch.Tensor)]


class KernelOp:
    """A public op ``golf_fast::<name>`` with its reference and its kernel backends."""

    def __init__(
        self,
        name: str,
        reference: Callable[..., Any],
        *,
        fake: Callable[..., Any],
        mutates_args: Sequence[str] = (),
        selfcheck_inputs: Optional[Callable[[torch.device, torch.dtype], tuple]] = None,
        compare: Callable[[Any, Any], Optional[str]] = exact_match,
        selfcheck_dtype_arg: Optional[int] = None,
    ) -> None:
        if not name.isidentifier():
            raise ValueError(f"name: expected an identifier, got {name!r}")
        self.name = name
        self.reference = reference
        self.selfcheck_inputs = selfcheck_inputs
        self.compare = compare
        self.selfcheck_dtype_arg = selfcheck_dtype_arg  # which argument's dtype keys the self-check
        self.has_autograd = False
        params = list(inspect.signature(reference).parameters)
        self.mutated_index: Optional[int] = params.index(mutates_args[0]) if mutates_args else None
        self.torch_op = torch.library.custom_op(f"golf_fast::{name}", reference, mutates_args=tuple(mutates_args))
        self.torch_op.register_fake(fake)
        self._backends: list[Backend] = []
        self._resolved: dict[tuple, Backend] = {}

    # ---- registration

    def add_backend(self, name: str, device_type: str, fn: Callable[..., Any], *,
                    available: Availability = always_available, selfcheck: Optional[bool] = None,
                    native_autograd: bool = False) -> None:
        """Add a kernel for ``device_type`` (``"cuda"`` or ``"cpu"``), tried in the order added.

        ``selfcheck`` defaults to True for CUDA backends and for Triton backends of CPU tensors
        (``available=triton_in_interpreter``: the GPU kernel's code run by Triton's interpreter, so
        it gets the GPU kernel's first-use check). The first CUDA backend also becomes the
        CUDA kernel of the torch.library op (used under torch.compile); the op's CPU kernel resolves
        the CPU backends the same way. ``native_autograd``: see :class:`Backend` (a composite of
        PyTorch ops whose own autograd is faster than the op's registered backward).
        """
        if name == REFERENCE or any(b.name == name and b.device_type == device_type for b in self._backends):
            raise ValueError(f"name: backend {name!r} for {device_type} is already registered for {self.name}")
        first_cuda = device_type == "cuda" and not any(b.device_type == "cuda" for b in self._backends)
        if selfcheck is None:
            selfcheck = device_type == "cuda" or available is triton_in_interpreter
        self._backends.append(Backend(name, device_type, fn, available, selfcheck, native_autograd))
        self._resolved.clear()
        if first_cuda:
            self.torch_op.register_kernel("cuda")(self._dispatched_cuda_kernel)
        if device_type == "cpu" and not any(b.device_type == "cpu" for b in self._backends[:-1]):
            self.torch_op.register_kernel("cpu")(self._dispatched_cpu_kernel)

    def register_autograd(self, backward: Callable, setup_context: Callable) -> None:
        """Attach a backward (used by the registered op and by the eager autograd path alike)."""
        self.torch_op.register_autograd(backward, setup_context=setup_context)
        self._backward, self._setup_context = backward, setup_context
        self.has_autograd = True

    def backends(self, device_type: Optional[str] = None) -> list[str]:
        """The backend names this op accepts (for ``device_type``, or for any), each once, in the order
        added, then ``"reference"``."""
        names = [b.name for b in self._backends if device_type in (None, b.device_type)]
        return list(dict.fromkeys(names)) + [REFERENCE]

    # ---- resolution

    def resolve(self, device_type: str, backend: str = "auto", fallback: Optional[str] = None) -> Backend:
        """Pick the implementation for ``device_type``; see the module docstring for the rules.

        Successful resolutions are cached per (device type, backend, fallback, interpreter mode):
        availability does not change within a process except through TRITON_INTERPRET.
        """
        key = (device_type, backend, fallback, interpreter_enabled())
        hit = self._resolved.get(key)
        if hit is not None:
            _registry.resolved[(self.name, device_type)] = hit.name  # what runs now, not what ran first
            return hit
        chosen = self._resolve(device_type, backend, fallback)
        self._resolved[key] = chosen
        return chosen

    def _resolve(self, device_type: str, backend: str, fallback: Optional[str]) -> Backend:
        if fallback not in (None, REFERENCE):
            raise ValueError(f"fallback: expected None or 'reference', got {fallback!r}")
        reference = Backend(REFERENCE, device_type, self.reference, always_available, False)
        if backend == REFERENCE:
            return self._note(device_type, reference)
        known = [b for b in self._backends if b.device_type == device_type]
        reasons: list[str] = []
        if backend == "auto":
            candidates = known
        else:
            if backend not in {b.name for b in self._backends}:
                per_device = "; ".join(f"{d}: {self.backends(d)[:-1]}" for d in
                                       dict.fromkeys(b.device_type for b in self._backends))
                raise ValueError(f"backend: expected one of {['auto'] + self.backends()} for {self.name} "
                                 f"({per_device}), got {backend!r}")
            candidates = [b for b in known if b.name == backend]
            if not candidates:
                reasons.append(f"{backend} has no {device_type} implementation")
        for cand in candidates:
            why = cand.available()
            if why is None:  # a later candidate: say why the earlier ones were passed over (a warning on CUDA)
                return self._note(device_type, cand, because="; ".join(reasons))
            reasons.append(f"{cand.name}: {why}")
        if backend == "auto" and device_type != "cuda":
            return self._note(device_type, reference, because="; ".join(reasons))
        if fallback == REFERENCE:
            return self._note(device_type, reference, because="; ".join(reasons) or "no kernel registered")
        detail = "; ".join(reasons) or f"no {device_type} kernel is registered"
        raise BackendUnavailableError(
            f"golf_fast::{self.name}: no usable {backend!r} kernel for {device_type} tensors ({detail}). "
            f"Pass fallback='reference' to run the eager reference instead.")

    def _note(self, device_type: str, chosen: Backend, because: str = "") -> Backend:
        _registry.resolved[(self.name, device_type)] = chosen.name
        key = (self.name, device_type, chosen.name)
        if key not in _registry.logged:
            _registry.logged.add(key)
            msg = f"golf_fast::{self.name} on {device_type}: backend {chosen.name}"
            if because:
                msg += f" ({because})"
            (log.warning if because and device_type == "cuda" else log.info)(msg)
        return chosen

    # ---- self-check

    def selfcheck(self, chosen: Backend, device: torch.device, dtype: torch.dtype) -> None:
        """Compare ``chosen`` with the reference once per (device, dtype); raise on mismatch."""
        if not (chosen.selfcheck and config.selfcheck and self.selfcheck_inputs is not None):
            return
        key = (self.name, chosen.name, str(device), str(dtype))
        if key in _registry.checked:
            return
        refuse_selfcheck_in_capture(f"golf_fast::{self.name} ({chosen.name}, {dtype})", device)
        args = seeded_cpu_inputs(self.selfcheck_inputs, device, dtype)
        ref_args = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
        out = chosen.fn(*args)
        with precise_reference():
            ref = self.reference(*ref_args)
        if self.mutated_index is not None:  # in-place op: compare the mutated argument
            out, ref = args[self.mutated_index], ref_args[self.mutated_index]
        problem = self.compare(out, ref)
        if problem is not None:
            raise KernelSelfCheckError(
                f"golf_fast::{self.name} backend {chosen.name} on {device} ({dtype}) disagrees with its "
                f"reference on the first-use self-check: {problem}. This kernel cannot be trusted on this "
                f"machine; pass backend='reference' to run the eager reference, and report the versions "
                f"printed by golf_fast.status().")
        _registry.checked.add(key)

    # ---- calling

    def __call__(self, *args: Any, backend: str = "auto", fallback: Optional[str] = None) -> Any:
        tensors = _tensors(args)
        if not tensors:
            raise ValueError(f"golf_fast::{self.name}: expected tensor arguments")
        if torch.compiler.is_compiling():
            if backend not in ("auto",) or fallback is not None:
                raise ValueError(f"backend/fallback: under torch.compile golf_fast::{self.name} uses the "
                                 "registered kernels; call it with backend='auto' and no fallback")
            return self.torch_op(*args)
        device = tensors[0].device
        chosen = self.resolve(device.type, backend, fallback)
        if chosen.selfcheck:  # GPU kernels, and the same kernels under Triton's interpreter
            self.selfcheck(chosen, device, self._selfcheck_dtype(args, tensors))
        if (self.has_autograd and not chosen.native_autograd and torch.is_grad_enabled()
                and any(t.requires_grad for t in tensors)):
            return _EagerAutograd.apply(self, chosen, (backend, fallback), *args)
        return chosen.fn(*args)

    def precheck(self, device: torch.device, dtypes: Sequence[torch.dtype]) -> list[str]:
        """Run the self-check of the ``auto`` backend for ``device`` now, for each of ``dtypes`` (call
        before CUDA-graph capture); returns the backends checked (nothing off CUDA)."""
        device = torch.device(device)
        if device.type != "cuda":
            return []
        chosen = self.resolve("cuda")
        for dt in dtypes:
            self.selfcheck(chosen, device, dt)
        return [f"{self.name}:{chosen.name}:{dt}" for dt in dtypes]

    def _requested(self, device_type: str) -> Backend:
        """The backend of a call made through the dispatcher (compiled graphs, a backward): ``auto``,
        unless an eager backward asked for a backend this op has for ``device_type``."""
        req = _BACKWARD_REQUEST.get()
        if req is not None:
            backend, fallback = req
            if backend == REFERENCE or any(b.name == backend and b.device_type == device_type
                                           for b in self._backends):
                return self.resolve(device_type, backend, fallback)
            if fallback is not None:
                return self.resolve(device_type, "auto", fallback)
        return self.resolve(device_type)

    def _selfcheck_dtype(self, args: Sequence[Any], tensors: list[torch.Tensor]) -> torch.dtype:
        if self.selfcheck_dtype_arg is not None:
            return args[self.selfcheck_dtype_arg].dtype
        floats = [t for t in tensors if t.is_floating_point()]
        return (floats or tensors)[0].dtype

    def _dispatched_cpu_kernel(self, *args: Any) -> Any:
        """The CPU kernel of the torch.library op: the ``auto`` CPU backend (never an error on CPU),
        self-checked on first use when it is a Triton kernel under the interpreter."""
        chosen = self._requested("cpu")
        if chosen.selfcheck:
            tensors = _tensors(args)
            self.selfcheck(chosen, tensors[0].device, self._selfcheck_dtype(args, tensors))
        return chosen.fn(*args)

    def _dispatched_cuda_kernel(self, *args: Any) -> Any:
        """The CUDA kernel of the torch.library op: strict auto resolution plus the self-check."""
        tensors = _tensors(args)
        chosen = self._requested("cuda")
        self.selfcheck(chosen, tensors[0].device, self._selfcheck_dtype(args, tensors))
        return chosen.fn(*args)


_BACKWARD_REQUEST: contextvars.ContextVar[Optional[tuple[str, Optional[str]]]] = contextvars.ContextVar(
    "golf_fast_backward_request", default=None)
"""(backend, fallback) of the eager call whose backward is running (set by ``_EagerAutograd.backward``)."""


class _ShiftedContext:
    """The autograd context as an op's backward expects it: ``needs_input_grad`` of the op's own
    arguments (without ``_EagerAutograd``'s three leading ones); everything else is the real context."""

    def __init__(self, ctx: Any, skip: int) -> None:
        self._ctx = ctx
        self.needs_input_grad = tuple(ctx.needs_input_grad[skip:])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


class _EagerAutograd(torch.autograd.Function):
    """Eager calls that need a gradient: the resolved backend forward, the op's backward."""

    @staticmethod
    def forward(ctx, op: "KernelOp", chosen: Backend, request: tuple, *args: Any) -> Any:
        out = chosen.fn(*args)
        op._setup_context(ctx, args, out)
        ctx.golf_fast_op, ctx.golf_fast_request = op, request
        return out

    @staticmethod
    def backward(ctx, *grads: Any) -> Any:
        token = _BACKWARD_REQUEST.set(ctx.golf_fast_request)
        try:
            got = ctx.golf_fast_op._backward(_ShiftedContext(ctx, 3), *grads)
        finally:
            _BACKWARD_REQUEST.reset(token)
        got = got if isinstance(got, tuple) else (got,)
        return (None, None, None, *got)
