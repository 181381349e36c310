"""Diagram scripts and expressions run only inside the whitelist."""
import pytest

from services.common.workflow.sandbox import RestrictedEnvironment, ScriptRejected, compile_restricted


@pytest.mark.parametrize("source", [
    "department_name + '已受理'",
    "'漏水' in description and len(phone) == 11",
    "sorted([3, 1, 2])[0] == 1",
    "{'case_no': case_no, 'stage': 'assign'}",
])
def test_allowed_expressions_compile(source):
    compile_restricted(source)


@pytest.mark.parametrize("source, mode", [
    ("import os", "exec"),
    ("from os import system", "exec"),
    ("__import__('os')", "eval"),
    ("open('/etc/passwd').read()", "eval"),
    ("().__class__.__bases__[0].__subclasses__()", "eval"),
    ("'{0.__class__}'.format(1)", "eval"),
    ("getattr(x, 'y')", "eval"),
    ("eval('1')", "eval"),
    ("exec('x = 1')", "exec"),
    ("global x\nx = 1", "exec"),
    ("def f():\n    yield 1", "exec"),
])
def test_forbidden_code_is_refused(source, mode):
    with pytest.raises(ScriptRejected):
        compile_restricted(source, mode)


def test_syntax_error_is_a_clear_refusal():
    with pytest.raises(ScriptRejected, match="syntax error"):
        compile_restricted("case_no = ", "exec")


def test_environment_has_no_dangerous_builtins():
    env = RestrictedEnvironment({"double": lambda v: v * 2})
    assert env.evaluate("double(len(name))", {"name": "张三"}) == 4
    # Builtins that are not whitelisted are simply absent at run time.
    with pytest.raises(NameError):
        env.evaluate("breakpointx()", {})
    context = {"a": 1}
    env.execute("b = a + 1", context)
    assert context == {"a": 1, "b": 2}


def test_task_data_cannot_smuggle_builtins():
    env = RestrictedEnvironment()
    evil = {"abs": lambda v: "pwned"}
    assert env.evaluate("abs(-1)", {"__builtins__": evil}) == 1
