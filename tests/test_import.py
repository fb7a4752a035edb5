"""``import golf_fast`` works without Triton, without golf_fast._C and without a GPU."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import golf_fast

# A None entry in sys.modules makes `import NAME` raise ImportError, as if NAME were not installed.
BLOCKER = textwrap.dedent("""
    import sys
    for name in ("triton", "triton.language", "golf_fast._C"):
        sys.modules[name] = None
""")


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


def test_import_without_triton_and_extension():
    proc = run_python("""
        import torch, golf_fast
        assert golf_fast.HAS_TRITON is False and golf_fast.HAS_EXT is False
        status = golf_fast.status()
        assert "golf_fast._C: MISSING" in status and "pip install --no-build-isolation -e ." in status, status
        assert "triton: MISSING" in status and "pip install triton" in status, status
        codes = torch.randint(-31, 32, (4, 9), dtype=torch.int8)
        assert torch.equal(golf_fast.unpack_int6(golf_fast.pack_int6(codes), 9), codes)
        from golf_fast.ops.dispatch import resolved_backends
        assert resolved_backends()["pack_int6@cpu"] == "reference"
        try:
            golf_fast.pack_int6(codes, backend="triton")
        except Exception as exc:
            assert "Triton" in str(exc), exc
        else:
            raise AssertionError("backend='triton' without Triton must fail")
        assert not torch.cuda.is_initialized()
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_import_does_no_cuda_initialisation_or_compilation():
    proc = subprocess.run([sys.executable, "-c", "import torch, golf_fast, sys; "
                           "print(torch.cuda.is_initialized(), 'torch._inductor' in sys.modules)"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_flags_and_version():
    assert isinstance(golf_fast.HAS_EXT, bool) and isinstance(golf_fast.HAS_TRITON, bool)
    assert golf_fast.__version__
