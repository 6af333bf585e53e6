"""Code fix: repair a buggy one-line Python function; the reward executes the fix.

Each row: ``prompt`` ("fix : def add ( a , b ) : return a - b ; fixed : return"),
the function's ``signature``, its ``buggy`` body and ``tests`` (argument tuple
and expected value, as Python literals). The completion is the new return
expression; the program ``def add(...): return <completion>`` is run against the
tests in a sandbox (:mod:`reference.tasks.code_fix_prompts.sandbox`: a separate
``python -I -S`` process per completion, an empty temporary directory, an
empty environment, CPU/memory/file limits and a wall-clock timeout). Reward in
[0, 1]: 0 when the program does not compile, or raises (or times out) on every
test; else 0.25 for code that runs plus 0.75 times the share of tests passed.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from reference.tasks.code_fix_prompts.sandbox import run_tests

NAME = "code_fix_prompts"
MAX_COMPLETION = 8
EXTRA_COLUMNS = ()

#: (name, params, buggy body, fixed body, tests as (args, expected) literals)
FUNCTIONS = (
    ("add", "a , b", "a - b", "a + b", (("(2, 3)", "5"), ("(0, 4)", "4"), ("(-1, 1)", "0"))),
    ("sub", "a , b", "b - a", "a - b", (("(5, 3)", "2"), ("(0, 4)", "-4"), ("(7, 7)", "0"))),
    ("mul", "a , b", "a + b", "a * b", (("(2, 3)", "6"), ("(0, 4)", "0"), ("(5, 1)", "5"))),
    ("square", "a", "a * 2", "a * a", (("(3,)", "9"), ("(0,)", "0"), ("(-2,)", "4"))),
    ("double", "a", "a * a", "a * 2", (("(3,)", "6"), ("(0,)", "0"), ("(1,)", "2"))),
    ("inc", "a", "a - 1", "a + 1", (("(3,)", "4"), ("(0,)", "1"), ("(-1,)", "0"))),
    ("dec", "a", "a + 1", "a - 1", (("(3,)", "2"), ("(0,)", "-1"), ("(1,)", "0"))),
    ("neg", "a", "a", "- a", (("(3,)", "-3"), ("(0,)", "0"), ("(-2,)", "2"))),
    ("bigger", "a , b", "min ( a , b )", "max ( a , b )", (("(2, 3)", "3"), ("(5, 1)", "5"), ("(4, 4)", "4"))),
    ("smaller", "a , b", "max ( a , b )", "min ( a , b )", (("(2, 3)", "2"), ("(5, 1)", "1"), ("(4, 4)", "4"))),
    ("size", "a", "abs ( a ) + 1", "abs ( a )", (("(-3,)", "3"), ("(2,)", "2"), ("(0,)", "0"))),
    ("even", "a", "a % 2 == 1", "a % 2 == 0", (("(2,)", "True"), ("(3,)", "False"), ("(0,)", "True"))),
    ("odd", "a", "a % 2 == 0", "a % 2 == 1", (("(3,)", "True"), ("(4,)", "False"), ("(1,)", "True"))),
    ("twice_sum", "a , b", "a + b * 2", "( a + b ) * 2", (("(1, 2)", "6"), ("(0, 0)", "0"), ("(3, 1)", "8"))),
    ("diff", "a , b", "a - b", "abs ( a - b )", (("(2, 5)", "3"), ("(5, 2)", "3"), ("(1, 1)", "0"))),
    ("half", "a", "a / 2", "a // 2", (("(5,)", "2"), ("(4,)", "2"), ("(1,)", "0"))),
    ("mod3", "a", "a % 2", "a % 3", (("(5,)", "2"), ("(3,)", "0"), ("(4,)", "1"))),
    ("cube", "a", "a * a", "a * a * a", (("(2,)", "8"), ("(1,)", "1"), ("(-1,)", "-1"))),
    ("plus2", "a", "a + 1", "a + 2", (("(0,)", "2"), ("(3,)", "5"), ("(-2,)", "0"))),
    ("both", "a , b", "a or b", "a and b", (("(1, 0)", "0"), ("(1, 2)", "2"), ("(0, 3)", "0"))),
    ("first", "a , b", "b", "a", (("(1, 2)", "1"), ("(5, 0)", "5"), ("(3, 3)", "3"))),
    ("last", "a , b", "a", "b", (("(1, 2)", "2"), ("(5, 0)", "0"), ("(3, 3)", "3"))),
    ("sum3", "a , b , c", "a + b", "a + b + c", (("(1, 2, 3)", "6"), ("(0, 0, 1)", "1"), ("(2, 2, 2)", "6"))),
    ("avg", "a , b", "a + b / 2", "( a + b ) / 2", (("(2, 4)", "3.0"), ("(0, 0)", "0.0"), ("(1, 2)", "1.5"))),
    ("positive", "a", "a < 0", "a > 0", (("(3,)", "True"), ("(-1,)", "False"), ("(0,)", "False"))),
    ("same", "a , b", "a != b", "a == b", (("(2, 2)", "True"), ("(2, 3)", "False"), ("(0, 0)", "True"))),
    ("triple", "a", "a + 3", "a * 3", (("(2,)", "6"), ("(0,)", "0"), ("(1,)", "3"))),
    ("sq_sum", "a , b", "a * a + b", "a * a + b * b", (("(1, 2)", "5"), ("(3, 0)", "9"), ("(2, 2)", "8"))),
    ("minus1_b", "a , b", "a - 1", "b - 1", (("(5, 3)", "2"), ("(0, 1)", "0"), ("(2, 2)", "1"))),
    ("prod3", "a , b , c", "a * b + c", "a * b * c", (("(1, 2, 3)", "6"), ("(2, 2, 0)", "0"), ("(1, 1, 1)", "1"))),
    ("gt", "a , b", "a < b", "a > b", (("(3, 2)", "True"), ("(2, 3)", "False"), ("(2, 2)", "False"))),
    ("zero", "a", "a", "a - a", (("(3,)", "0"), ("(0,)", "0"), ("(-5,)", "0"))),
)
#: expressions the warm start pairs with every prompt (a generic prior)
WARM_EXPRESSIONS = ("a + b", "a - b", "a * b", "a + 1", "a * 2", "max ( a , b )", "abs ( a )", "a % 2 == 0")

def rows(split: str) -> list[dict]:
    """The fixed rows of ``split`` ("train": 24, "validation": 8), deterministic."""
    out = []
    for i, (name, params, buggy, fixed, tests) in enumerate(FUNCTIONS):
        signature = f"def {name} ( {params} ) :"
        out.append({"id": f"fix-{name}", "prompt": f"fix : {signature} return {buggy} ; fixed : return",
                    "signature": signature, "buggy": buggy, "reference": fixed,
                    "tests": [list(t) for t in tests]})
    return out[:24] if split == "train" else out[24:]


def reward(completions, signature, tests, **_kwargs) -> list[float]:
    """TRL reward function: 0.25 for code that runs + 0.75 x the share of tests passed."""
    jobs = list(zip(signature, completions, tests))
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: run_tests(*job), jobs))
    return [score(passed, ran, len(t)) for (passed, ran), t in zip(results, tests)]


def score(passed: int, ran: int, total: int) -> float:
    """0 for code that never ran; else 0.25 + 0.75 * passed / total."""
    return 0.0 if ran == 0 or total == 0 else 0.25 + 0.75 * passed / total


def warm_texts(train_rows) -> list[str]:
    """Warm start: every training prompt followed by each of :data:`WARM_EXPRESSIONS`
    (a generic prior of short expressions; no validation row is used)."""
    return [f"{row['prompt']} {expr}" for row in train_rows for expr in WARM_EXPRESSIONS]


def texts(all_rows) -> list[str]:
    """Every text the tokenizer must cover."""
    return [r["prompt"] + " " + r["reference"] for r in all_rows] + list(WARM_EXPRESSIONS)
