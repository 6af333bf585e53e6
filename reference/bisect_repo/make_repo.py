"""Build a small git repository whose history breaks a training run at a known commit.

The repository holds ``train.py``: linear regression by full-batch gradient
descent in NumPy (200 steps, well under a second), logging ``loss`` every step
through ``rldk.writer`` (``RLDK_DIR`` / ``RLDK_RUN_ID`` choose where). Its history:

    c0  initial training script            lr 0.1: loss falls to ~0.01 (good)
    c1  log the gradient norm               good
    c2  add weight decay option             good
    c3  refactor data loading               crashes (NameError): cannot be tested
    c4  fix data loading                    good
    c5  change the default learning rate    lr 1e-4: loss stays ~4.7 (the first bad commit)
    c6  add a README                        bad
    c7  raise the default step count        bad

    python reference/bisect_repo/make_repo.py /tmp/demo-repo     # prints the commit ids
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = '''"""Linear regression by gradient descent, logged with rldk."""
import numpy as np
import rldk.writer as w

LR = {lr}
STEPS = {steps}
WEIGHT_DECAY = {wd}


def make_data(n=256, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    true_w = rng.normal(size=d)
    return x, x @ true_w + 0.1 * rng.normal(size=n)


def main():
    {load}
    weights = np.zeros(x.shape[1])
    w.init("runs", run_id="train", config={{"lr": LR, "steps": STEPS}}, capture_env=False)
    for step in range(STEPS):
        residual = x @ weights - y
        loss = float(np.mean(residual ** 2))
        grad = 2 * x.T @ residual / len(y) + WEIGHT_DECAY * weights
        weights -= LR * grad
        w.log(step, loss=loss{extra})
    w.close()


if __name__ == "__main__":
    main()
'''

#: (label, message, template fields); each commit rewrites train.py (and maybe README)
HISTORY = (
    ("c0", "initial training script", {"lr": "0.1", "steps": 200, "wd": "0.0", "load": "x, y = make_data()", "extra": ""}),
    ("c1", "log the gradient norm", {"extra": ", grad_norm=float(np.linalg.norm(grad))"}),
    ("c2", "add weight decay option", {"wd": "1e-4"}),
    ("c3", "refactor data loading", {"load": "x, y = load_dataset()"}),
    ("c4", "fix data loading", {"load": "x, y = make_data()"}),
    ("c5", "change the default learning rate", {"lr": "1e-4"}),
    ("c6", "add a README", {}),
    ("c7", "raise the default step count", {"steps": 220}),
)
FIRST_BAD = "c5"
BROKEN = "c3"


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "rldk", "GIT_AUTHOR_EMAIL": "rldk@example.invalid",
           "GIT_COMMITTER_NAME": "rldk", "GIT_COMMITTER_EMAIL": "rldk@example.invalid",
           "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


#: a history where the only commit between the last good and the first bad one crashes:
#: bisect cannot tell which of the two broke training
AMBIGUOUS = (
    HISTORY[0],
    ("c1", "refactor data loading", {"load": "x, y = load_dataset()"}),
    ("c2", "change the default learning rate", {"load": "x, y = make_data()", "lr": "1e-4"}),
    ("c3", "add a README", {}),
)


def make_repo(path, history=HISTORY) -> dict[str, str]:
    """Create the repository at ``path`` (must not exist or be empty) with ``history``
    (``(label, message, template changes)`` per commit); returns label -> commit id."""
    repo = Path(path)
    repo.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "-q")
    _git(repo, "checkout", "-q", "-b", "main")
    (repo / ".gitignore").write_text("runs/\n__pycache__/\n", encoding="utf-8")
    fields: dict = {}
    commits = {}
    for label, message, change in history:
        fields.update(change)
        (repo / "train.py").write_text(SCRIPT.format(**fields), encoding="utf-8")
        if message == "add a README":
            (repo / "README.md").write_text("Linear regression, logged with rldk.\n", encoding="utf-8")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", message)
        commits[label] = _git(repo, "rev-parse", "HEAD").strip()
    return commits


if __name__ == "__main__":
    print(json.dumps(make_repo(sys.argv[1]), indent=2))
