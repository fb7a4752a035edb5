"""Muon's step replayed from a CUDA graph: no per-launch host work in the optimizer step.

Newton-Schulz alone is 2 + 3·steps = 17 Triton launches per bank per step, each with host-side
grid arithmetic and argument packing (several µs of Python each), plus the momentum, row
normalization, weight decay, update and (Parallel Muon) the collectives: at the record's scale
the optimizer step is host-bound, not GPU-bound. :class:`GraphedOptimizerStep` captures
:meth:`Muon.step_body` once and replays it: one ``cudaGraphLaunch`` plus two ``fill_``
launches (the step's lr and μ) per step.

Protocol (``step()`` has the same effect as ``opt.step()``):

1. ``warmup_steps`` eager steps on a side stream: they create the momentum and shard buffers and
   the Newton-Schulz workspaces (cached per stream, so on the stream the capture uses), and run
   every kernel's first-use self-check, before any capture;
2. the next step is captured on that stream (capture records without executing) and replayed;
3. later steps: the gradients and optimizer state are bound to the captured tensors (a
   gradient or state tensor that was replaced, e.g. by ``zero_grad(set_to_none=True)`` or
   ``load_state_dict``, is copied into the captured one, asynchronously), lr and μ are written
   into their device tensors, the graph is replayed, and the host step counters advance.

If the optimizer state loses a tensor the graph uses (``load_state_dict`` of an older state),
the graph is dropped and the warm-up and capture happen again.

Requirements: the parameters are on one CUDA device and every parameter has a gradient at
every step. Under Parallel Muon the collectives (NCCL) are captured with the rest.
"""

from __future__ import annotations

from typing import Optional

import torch

from golf_fast.optim.muon import Muon


class GraphedOptimizerStep:
    """``step()``: ``opt.step()`` replayed from a CUDA graph (see the module docstring)."""

    def __init__(self, opt: Muon, warmup_steps: int = 2) -> None:
        if not isinstance(opt, Muon):
            raise TypeError(f"opt: expected a golf_fast.optim.Muon, got {type(opt).__name__}")
        if not isinstance(warmup_steps, int) or isinstance(warmup_steps, bool) or warmup_steps < 1:
            raise ValueError(f"warmup_steps: expected an int >= 1 (buffers and self-checks before capture), "
                             f"got {warmup_steps!r}")
        params = [p for g in opt.param_groups for p in g["params"]]
        devices = {p.device for p in params}
        if not params or len(devices) != 1 or next(iter(devices)).type != "cuda":
            raise ValueError(f"opt: a CUDA-graph step needs all parameters on one CUDA device, got "
                             f"{sorted(str(d) for d in devices) or 'no parameters'}")
        if not torch.cuda.is_available():
            raise RuntimeError("opt: a CUDA-graph step needs CUDA")
        self.opt, self.params, self.warmup_steps = opt, params, warmup_steps
        self.device = next(iter(devices))
        opt.enable_device_hyperparameters()
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.stream: Optional[torch.cuda.Stream] = None
        self.eager_steps = 0
        self.captures = 0
        self._grads: list[torch.Tensor] = []
        self._state: dict[tuple[int, str], torch.Tensor] = {}

    # ------------------------------------------------------------------ public

    def __call__(self) -> None:
        self.step()

    @torch.no_grad()
    def step(self) -> None:
        self._check_grads()
        if self.graph is not None and not self._bind():
            self.graph = None  # the state no longer matches the graph: warm up and capture again
            self.eager_steps = 0
        if self.graph is None:
            if self.eager_steps < self.warmup_steps:
                self._eager_step()
                return
            self._capture()
        self.opt.load_hyperparameters()
        self.graph.replay()
        self.opt.advance()

    @property
    def captured(self) -> bool:
        return self.graph is not None

    # ------------------------------------------------------------------ parts

    def _side_stream(self) -> torch.cuda.Stream:
        if self.stream is None:
            self.stream = torch.cuda.Stream(self.device)
        return self.stream

    def _check_grads(self) -> None:
        for p in self.params:
            if p.grad is None:
                raise ValueError(f"params: a CUDA-graph optimizer step needs a gradient for every parameter at every "
                                 f"step (a parameter of shape {tuple(p.shape)} has none)")

    def _eager_step(self) -> None:
        s, cur = self._side_stream(), torch.cuda.current_stream(self.device)
        s.wait_stream(cur)
        with torch.cuda.stream(s):
            self.opt.load_hyperparameters()
            self.opt.step_body()
        cur.wait_stream(s)
        self.opt.advance()
        self.eager_steps += 1

    def _capture(self) -> None:
        s, cur = self._side_stream(), torch.cuda.current_stream(self.device)
        self._grads = [p.grad for p in self.params]
        self._state = {(i, k): v for i, p in enumerate(self.params) for k, v in self.opt.state[p].items()
                       if isinstance(v, torch.Tensor)}
        graph = torch.cuda.CUDAGraph()
        s.wait_stream(cur)
        try:
            # thread_local: the data loaders' threads pin memory while this thread captures
            with torch.cuda.graph(graph, stream=s, capture_error_mode="thread_local"):
                self.opt.step_body()
        except Exception as e:
            raise RuntimeError(f"optim.graph_step: capturing Muon's step in a CUDA graph failed ({type(e).__name__}: "
                               f"{e}); run with --optim.graph_step off to step eagerly") from e
        cur.wait_stream(s)
        self.graph = graph
        self.captures += 1

    def _bind(self) -> bool:
        """Put this step's gradients and state into the captured tensors; False if the state lost one."""
        for p, g in zip(self.params, self._grads):
            if p.grad is not g:
                g.copy_(p.grad, non_blocking=True)
                p.grad = g
        for (i, k), t in self._state.items():
            st = self.opt.state[self.params[i]]
            cur = st.get(k)
            if not isinstance(cur, torch.Tensor) or cur.shape != t.shape:
                return False
            if cur is not t:
                t.copy_(cur, non_blocking=True)
                st[k] = t
        return True
