"The library stays readable: no function of slimlab/ longer than 60 lines or with more than 10 parameters (a method's self counted)."
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent/'slimlab'
MAX_LINES, MAX_PARAMS = 60, 10

def functions():
    "(module.function, lines, parameters) of every function and method of the package."
    for path in sorted(PACKAGE.glob('*.py')):
        if path.name == '_modidx.py': continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                params = [*a.posonlyargs, *a.args, *a.kwonlyargs] + [p for p in (a.vararg, a.kwarg) if p]
                yield f"{path.stem}.{node.name}", node.end_lineno - node.lineno + 1, len(params)

def test_no_long_function():
    long = sorted((n, lines) for n, lines, _ in functions() if lines > MAX_LINES)
    assert not long, f"functions over {MAX_LINES} lines: {long}"

def test_no_function_with_many_parameters():
    many = sorted((n, k) for n, _, k in functions() if k > MAX_PARAMS)
    assert not many, f"functions with more than {MAX_PARAMS} parameters: {many}"

def test_the_check_sees_every_module():
    names = {n.split('.')[0] for n, _, _ in functions()}
    assert {'recipes', 'schedules', 'distill', 'prune', 'cli'} <= names
