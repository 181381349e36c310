"""Restricted scripts and expressions for diagrams.

SpiffWorkflow evals scripts with every builtin available. Here every script, condition,
timer and DMN expression is checked against an AST whitelist (at deploy and, cached, before
each run) and evaluated with a small set of builtins plus the platform's helpers, so a diagram
cannot import, open files, reach the network, or climb to dunder attributes.
"""
from __future__ import annotations

import ast
import builtins
import copy
from functools import lru_cache

from SpiffWorkflow.bpmn.script_engine import TaskDataEnvironment

SAFE_BUILTINS = {
    name: getattr(builtins, name)
    for name in (
        "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "int",
        "isinstance", "len", "list", "map", "max", "min", "range", "reversed", "round", "set",
        "sorted", "str", "sum", "tuple", "zip", "True", "False", "None",
        "ValueError", "KeyError", "Exception",
    )
}
FORBIDDEN_NAMES = {
    "eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "globals", "locals",
    "vars", "type", "object", "breakpoint", "input", "memoryview", "help", "dir", "super",
    "classmethod", "staticmethod", "property",
}
# str.format can reach attributes ("{0.__class__}"), so it is refused with the dunders.
FORBIDDEN_ATTRIBUTES = {"format", "format_map", "mro", "gi_frame", "f_globals"}
FORBIDDEN_NODES = (ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal, ast.AsyncFunctionDef,
                   ast.Await, ast.Yield, ast.YieldFrom, ast.ClassDef)


class ScriptRejected(ValueError):
    pass


@lru_cache(maxsize=4096)
def compile_restricted(source: str, mode: str = "eval"):
    """Check ``source`` against the whitelist and return its code object."""
    try:
        tree = ast.parse(source.strip() if mode == "eval" else source, mode=mode)
    except SyntaxError as err:
        raise ScriptRejected(f"语法错误 (syntax error) on line {err.lineno}: {err.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, FORBIDDEN_NODES):
            raise ScriptRejected(f"{type(node).__name__} is not allowed in diagram scripts")
        if isinstance(node, ast.Name) and (node.id.startswith("_") or node.id in FORBIDDEN_NAMES):
            raise ScriptRejected(f"name '{node.id}' is not allowed in diagram scripts")
        if isinstance(node, ast.Attribute) and (
            node.attr.startswith("_") or node.attr in FORBIDDEN_ATTRIBUTES
        ):
            raise ScriptRejected(f"attribute '.{node.attr}' is not allowed in diagram scripts")
        if isinstance(node, ast.keyword) and node.arg and node.arg.startswith("_"):
            raise ScriptRejected(f"keyword '{node.arg}' is not allowed in diagram scripts")
    return compile(tree, "<string>", mode)


class RestrictedEnvironment(TaskDataEnvironment):
    """Task-data environment that runs only whitelisted code with whitelisted helpers."""

    def __init__(self, helpers: dict | None = None):
        super().__init__(dict(helpers or {}))

    def _globals(self, context, external_context):
        my_globals = copy.copy(self.globals)
        my_globals.update(external_context or {})
        my_globals.update(context)
        my_globals["__builtins__"] = SAFE_BUILTINS
        return my_globals

    def evaluate(self, expression, context, external_context=None):
        code = compile_restricted(expression, "eval")
        return eval(code, self._globals(context, external_context))

    def execute(self, script, context, external_context=None):
        code = compile_restricted(script, "exec")
        self.check_for_overwrite(context, external_context or {})
        context.update(self.globals)
        context.update(external_context or {})
        context["__builtins__"] = SAFE_BUILTINS
        try:
            exec(code, context)
        finally:
            self._remove_globals_and_functions_from_context(context, external_context)
        return True
