"""A fork-based harness that loads hostile artifacts without risking the test process.

Each batch of cases is decoded in a forked child under an address-space limit
(``resource.setrlimit(RLIMIT_AS)``) and an alarm; the child reports one result per case through a
pipe. A child that dies (a signal: a segfault, the alarm of a hang, an abort) or stops early is
found by its exit status and the batch is bisected until the single case is known.

Result kinds: ``accepted`` (decoded), ``clean`` (``ArtifactError``), ``foreign`` (any other
exception, or the loader's "unexpected …" safety net), ``blowup`` (``MemoryError`` under the
limit), ``crash`` / ``hang`` (the child died / the alarm fired).
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import time
from collections import Counter
from typing import Callable, Sequence


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _classify(exc: BaseException, error_type: type) -> str:
    if isinstance(exc, MemoryError) or "MemoryError" in str(exc)[:200]:
        return "blowup"
    if isinstance(exc, error_type) and not str(exc).startswith("unexpected "):
        return "clean"
    return "foreign"


def _child(cases: Sequence[bytes], load: Callable[[bytes], object], error_type: type, wfd: int,
           extra_bytes: int, alarm_s: int) -> None:
    try:
        import faulthandler

        import torch

        faulthandler.disable()  # a crash is reported by the exit status, not a traceback dump
        torch.set_num_threads(1)
        limit = _vm_size() + extra_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the alarm kills the child even inside C++
        signal.alarm(alarm_s)
        for data in cases:
            try:
                load(data)
                kind, what = "accepted", ""
            except BaseException as exc:  # noqa: BLE001 - classifying every outcome is the point
                kind = _classify(exc, error_type)
                what = f"{type(exc).__name__}: {str(exc)[:300]}"
            os.write(wfd, (json.dumps({"kind": kind, "what": what}) + "\n").encode())
        os._exit(0)
    except BaseException:  # noqa: BLE001
        os._exit(70)


def _run_batch(cases: Sequence[bytes], load, error_type, extra_bytes: int, alarm_s: int
               ) -> tuple[list[dict], int]:
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _child(cases, load, error_type, wfd, extra_bytes, alarm_s)
    os.close(wfd)
    buf = b""
    deadline = time.monotonic() + alarm_s + 10
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            break
        ready, _, _ = select.select([rfd], [], [], left)
        if not ready:
            continue
        chunk = os.read(rfd, 1 << 16)
        if not chunk:
            break
        buf += chunk
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    results = [json.loads(line) for line in buf.decode().splitlines() if line.strip()]
    return results, status


def run_cases(cases: Sequence[bytes], load: Callable[[bytes], object], error_type: type, *, batch: int = 64,
              extra_bytes: int = 1 << 30, alarm_s: int = 20) -> list[dict]:
    """One result dict per case (``kind``, ``what``), in order; see the module docstring."""
    out: list[dict] = []

    def solve(idx: list[int]) -> None:
        results, status = _run_batch([cases[i] for i in idx], load, error_type, extra_bytes, alarm_s)
        died = not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0) or len(results) != len(idx)
        if not died:
            for i, r in zip(idx, results):
                out.append({"case": i, **r})
            return
        if len(idx) == 1:
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            kind = "hang" if sig in (signal.SIGALRM, signal.SIGKILL) else "crash"
            out.append({"case": idx[0], "kind": kind, "what": f"child status {status} (signal {sig})"})
            return
        half = len(idx) // 2
        solve(idx[:half])
        solve(idx[half:])

    for start in range(0, len(cases), batch):
        solve(list(range(start, min(start + batch, len(cases)))))
    out.sort(key=lambda r: r["case"])
    return out


def summary(results: Sequence[dict]) -> Counter:
    return Counter(r["kind"] for r in results)
