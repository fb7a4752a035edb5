"""Device profiles (``run.device_profile``): how every ``auto`` of a training run resolves, and what
runs in its place on this machine.

* ``auto``: the choices of the device the run is on (CUDA when present, else the CPU);
* ``cpu``: the CPU's choices, whatever the device;
* ``h100``: the choices an H100 (sm_90) run makes, made on any device. On a CPU each GPU-only
  choice runs through its stand-in: the golf_fast op's CPU backend (the C++ kernel or the eager
  reference; the Triton kernel in the interpreter under ``TRITON_INTERPRET=1``), eager code for
  what only exists as a compiled or captured form on CUDA, SDPA for FlashAttention-3. The run
  logs one line per choice saying what stood in.

Only fields left at ``auto`` follow the profile: an explicit value always wins (and
``run.device`` decides where the run is, so ``h100`` on a CPU-only machine runs on its CPU).

The choices (key: CPU · H100 · stand-in on a CPU under ``h100``):

=====================  =============  ===========================  ===================================
``auto`` of            CPU            H100                         stand-in on a CPU under ``h100``
=====================  =============  ===========================  ===================================
run.device             cpu            cuda                         cpu
run.autocast           fp32           bf16                         bf16 autocast on the CPU (same dtype)
run.compile            off            on (Inductor, fullgraph)     eager (the graph's ops, uncompiled)
run.attention          sdpa           fa3 (→ fa2 → sdpa)           sdpa (per-document causal masks)
optim.graph_step       off            on (Muon step CUDA graph)    eager Muon step (the captured body)
eval.weights           dequantized    int6                         int6 banks, int6_linear CPU backend
model fused CE         eager          softcapped_cross_entropy     golf_fast op, CPU backend
model fused MLP        eager          leaky_relu_square_mlp        golf_fast op, CPU backend (bf16)
kernel backends        cpp/reference  triton                       cpp/reference (triton if interpreted)
=====================  =============  ===========================  ===================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

PROFILES = ("auto", "cpu", "h100")


@dataclass(frozen=True)
class Choice:
    """One ``auto`` resolved: ``key`` (config key or model switch), ``value`` (what the profile's
    device picks), ``here`` (what runs on this machine; equal to ``value`` when nothing stands in)."""

    key: str
    value: str
    here: str

    @property
    def stand_in(self) -> bool:
        return self.here != self.value


@dataclass
class DeviceProfile:
    """The resolved choices of a run (see the module docstring)."""

    name: str
    """``cpu`` or ``h100`` (``auto`` is resolved to one of them)."""
    device_type: str
    """Where the run actually is: ``cuda`` or ``cpu``."""
    choices: dict[str, Choice] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """The device type the choices are made for."""
        return "cuda" if self.name == "h100" else "cpu"

    def value(self, key: str) -> str:
        return self.choices[key].value

    def here(self, key: str) -> str:
        return self.choices[key].here

    def lines(self) -> list[str]:
        """One line per choice: ``key: value`` and, where something stood in, what ran instead."""
        out = []
        for c in self.choices.values():
            out.append(f"{c.key}: {c.value}" + (f"  (stand-in here: {c.here})" if c.stand_in else ""))
        return out


def resolve_profile(cfg, device_type: str) -> DeviceProfile:
    """The choices of ``cfg`` (a ``TrainConfig``) under ``cfg.run.device_profile`` for a run on a
    device of type ``device_type`` (``cuda`` or ``cpu``)."""
    if device_type not in ("cuda", "cpu"):
        raise ValueError(f"device_type: expected 'cuda' or 'cpu', got {device_type!r}")
    name = cfg.run.device_profile
    if name not in PROFILES:
        raise ValueError(f"run.device_profile: expected one of {PROFILES}, got {name!r}")
    if name == "auto":
        name = "h100" if device_type == "cuda" else "cpu"
    p = DeviceProfile(name, device_type)
    gpu, on_gpu = p.target == "cuda", device_type == "cuda"
    run, opt, ev = cfg.run, cfg.optim, cfg.eval

    def add(key: str, value: str, here: Optional[str] = None) -> None:
        p.choices[key] = Choice(key, value, value if here is None else here)

    add("run.device", run.device if run.device != "auto" else ("cuda" if gpu else "cpu"), device_type)
    autocast = run.autocast if run.autocast != "auto" else ("bf16" if gpu else "fp32")
    add("run.autocast", autocast, autocast if on_gpu or autocast == "fp32" else f"{autocast} (CPU autocast)")
    compile_ = run.compile if run.compile != "auto" else ("on" if gpu else "off")
    add("run.compile", compile_, compile_ if on_gpu or run.compile == "on" or compile_ == "off" else "off (eager)")
    attention = run.attention if run.attention != "auto" else ("fa3" if gpu else "sdpa")
    add("run.attention", attention, attention if on_gpu else "sdpa")
    graph = opt.graph_step if opt.graph_step != "auto" else ("on" if gpu else "off")
    if opt.matrix_optimizer != "muon":
        graph = "off"
    # an explicit ``on`` is kept (and is an error on a CPU, from the optimizer builder)
    add("optim.graph_step", graph, graph if on_gpu or graph == "off" or opt.graph_step == "on"
        else "off (eager Muon step)")
    weights = ev.weights if ev.weights != "auto" else ("int6" if gpu else "dequantized")
    add("eval.weights", weights, weights if on_gpu or weights == "dequantized" else "int6 (int6_linear CPU backend)")
    fused = "golf_fast op" if gpu else "eager"
    add("model.fused_cross_entropy", fused, fused if on_gpu or not gpu else "golf_fast op (CPU backend)")
    add("model.fused_mlp", fused, fused if on_gpu or not gpu else "golf_fast op (CPU backend)")
    kernels = "triton" if gpu else "cpp/reference"
    add("ops.backends", kernels, kernels if on_gpu or not gpu else "CPU backends (listed in the final table)")
    return p


def fused_modes(p: DeviceProfile) -> tuple[str, str]:
    """The model's ``FusedKernels`` switches (cross_entropy, mlp) under ``p``: ``always`` when the
    profile wants the fused ops on a device that is not CUDA, else the default ``cuda``. The fused
    MLP computes in bf16/fp16 only (on CUDA it runs when autocast is bf16): under an fp32 autocast
    it stays eager, as on an H100."""
    if p.target == "cuda" and p.device_type != "cuda":
        return "always", ("always" if p.value("run.autocast") == "bf16" else "cuda")
    return "cuda", "cuda"
