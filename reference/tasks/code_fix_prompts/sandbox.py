"""Run a generated one-line function against its tests in a separate, limited process.

Untrusted code never runs in the training process. Each call starts
``python -I -S -c CHILD`` (isolated mode: no user site, no ``PYTHON*``
variables, no current directory on ``sys.path``; ``-S``: no ``site``) with an
argv list (no shell), an empty environment, a fresh temporary directory as its
working directory, and the program and tests on stdin. Before compiling the
program the child lowers its own limits where the platform has ``resource``
(CPU seconds, address space, file size, open files, child processes; a root
user is not held by the process limit), installs an audit hook that refuses
imports, file opens, ``os``/``subprocess``/``socket``/``shutil``/``ctypes``
calls, and runs the candidate with only the arithmetic builtins of
:data:`BUILTINS`. The parent kills it after ``TIMEOUT_S`` seconds of wall time. This is a
reference-suite sandbox for a toy model's one-line expressions, not a security
boundary for hostile code: use a container or a VM for that.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile

TIMEOUT_S = 5.0
#: (resource name, soft = hard limit): CPU s, address space bytes, file bytes, files, processes
LIMITS = (("RLIMIT_CPU", 2), ("RLIMIT_AS", 512 * 1024 * 1024), ("RLIMIT_FSIZE", 1024 * 1024),
          ("RLIMIT_NOFILE", 16), ("RLIMIT_NPROC", 0))

#: the only builtins a candidate sees (no __import__, open, eval, exec, getattr...)
BUILTINS = ("abs", "all", "any", "bool", "divmod", "float", "int", "len", "max", "min", "pow", "range",
            "round", "sorted", "str", "sum", "tuple", "list", "ValueError", "ZeroDivisionError")

CHILD = r"""
import ast, json, sys
try:
    import resource
    for name, limit in LIMITS:
        if hasattr(resource, name):
            try:
                resource.setrlimit(getattr(resource, name), (limit, limit))
            except (ValueError, OSError):
                pass
except ImportError:
    pass
job = json.loads(sys.stdin.read())
DENY = ("open", "os.", "subprocess.", "socket.", "shutil.", "ctypes.", "import")
def audit(event, args):
    if event.startswith(DENY):
        raise PermissionError("sandbox: " + event)
sys.addaudithook(audit)
passed = ran = 0
try:
    import builtins
    allowed = {n: getattr(builtins, n) for n in BUILTINS}
    scope = {"__builtins__": allowed}
    exec(compile(job["source"], "<candidate>", "exec"), scope)
    func = next(v for k, v in scope.items() if k != "__builtins__")
    for args, expected in job["tests"]:
        try:
            value = func(*ast.literal_eval(args))
            ran += 1
            passed += value == ast.literal_eval(expected)
        except Exception:
            pass
except BaseException:
    pass
sys.stdout.write(json.dumps({"passed": int(passed), "ran": ran}))
""".replace("LIMITS", repr(LIMITS)).replace("BUILTINS", repr(BUILTINS))


def program(signature: str, body: str) -> str:
    """The candidate's source: ``signature`` with ``return body`` on the next line."""
    return f"{signature}\n    return {body}\n"


def run_tests(signature: str, body: str, tests) -> tuple[int, int]:
    """``(passed, ran)``: how many of ``tests`` ([args literal, expected literal]
    pairs) ``body`` passes, and on how many it returned at all.

    ``(0, 0)`` when the program does not compile, exceeds a limit or times out.
    """
    job = json.dumps({"source": program(signature, body), "tests": [list(t) for t in tests]})
    with tempfile.TemporaryDirectory(prefix="rldk-sandbox-") as tmp:
        try:
            done = subprocess.run([sys.executable, "-I", "-S", "-c", CHILD], input=job, cwd=tmp,
                                  env={}, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return 0, 0
    try:
        result = json.loads(done.stdout)
        return int(result["passed"]), int(result["ran"])
    except (ValueError, KeyError, TypeError):
        return 0, 0
