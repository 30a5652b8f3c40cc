"""MkDocs hooks: the tables of the docs that are generated from the code, so that they cannot drift.

A page asks for a table with a marker comment on a line of its own; ``make docs``
(``mkdocs build --strict``) replaces it when it builds the page:

- ``<!-- generated: write-parameters -->``: every parameter of ``WriteToRaccoon``,
  its default, what it does (its ``Args:`` docstring) and why the default is what
  it is (the comment above the ``DEFAULT_*`` constant that holds it).
- ``<!-- generated: api raccoon_beam -->`` (or another package): one mkdocstrings
  block per name of that package's ``__all__``, so the API reference lists the
  public API and nothing else.
- ``<!-- generated: emulator-settings -->``: every field of ``EmulatorConfig``
  with its flag, default, Raccoon setting and help.
- ``<!-- generated: fault-methods -->``: every fault method the control route
  accepts, with its arguments and docstring.
- ``<!-- generated: control-routes -->``: every route under ``/_emulator``, read
  from a running emulator's router.

``tests/test_docs.py`` calls these functions directly too.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import inspect
import pathlib
import re
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "raccoon_beam"
# Sphinx roles in docstrings (:class:`~x.Y`) shown as code in a table cell.
ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
MARKER = re.compile(r"^<!-- generated: (?P<what>[a-z-]+)(?: (?P<arg>[\w.]+))? -->$", re.MULTILINE)


def _cell(text: str) -> str:
    """Text made safe for one cell of a Markdown table."""
    text = ROLE.sub(r"`\1`", text).replace("``", "`")
    return " ".join(text.split()).replace("|", "\\|")


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table; each cell is already Markdown (``_cell`` the free text)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _docstring_args(obj: Any) -> Dict[str, str]:
    """The ``Args:`` section of a Google-style docstring: name -> description."""
    from griffe import Docstring, DocstringSectionKind

    sections = Docstring(inspect.getdoc(obj) or "", parser="google").parse(warnings=False)
    args: Dict[str, str] = {}
    for section in sections:
        if section.kind is DocstringSectionKind.parameters:
            for parameter in section.value:
                args[parameter.name] = parameter.description
    return args


def _module_path(module: str) -> pathlib.Path:
    path = ROOT / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


@functools.lru_cache(maxsize=None)
def constant_comment(module: str, name: str) -> str:
    """The comment that gives the reason of constant ``name`` as ``module`` sees it.

    The comment block right above its assignment, or the comment at its end,
    in the module that assigns it: followed through ``from ... import name``.
    """
    source = _module_path(module).read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module and any(alias.name == name for alias in node.names):
            return constant_comment(node.module, name)
    lines = source.splitlines()
    assignment = re.compile(rf"^{name}\s*(?::[^=]*)?=[^#]*(?:#\s*(?P<trailing>.*))?$")
    for number, line in enumerate(lines):
        match = assignment.match(line)
        if match:
            above: List[str] = []
            index = number - 1
            while index >= 0 and lines[index].startswith("#"):
                above.insert(0, lines[index].lstrip("# ").rstrip())
                index -= 1
            return " ".join(above) or (match.group("trailing") or "").strip()
    return ""


def _default_expressions(function: Callable[..., Any]) -> Dict[str, str]:
    """Parameter -> the source text of its default (``DEFAULT_TIMEOUT``, ``None``, ...)."""
    tree = ast.parse(inspect.cleandoc("\n" + inspect.getsource(function)))
    node = tree.body[0]
    assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    arguments = node.args
    expressions: Dict[str, str] = {}
    positional = arguments.posonlyargs + arguments.args
    for arg, default in zip(positional[len(positional) - len(arguments.defaults) :], arguments.defaults):
        expressions[arg.arg] = ast.unparse(default)
    for arg, kw_default in zip(arguments.kwonlyargs, arguments.kw_defaults):
        if kw_default is not None:
            expressions[arg.arg] = ast.unparse(kw_default)
    return expressions


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One row of the configuration reference."""

    name: str
    default: str
    description: str
    reason: str


def write_parameters() -> List[Parameter]:
    """Every parameter of ``WriteToRaccoon.__init__``, in signature order."""
    from raccoon_beam.io import WriteToRaccoon

    signature = inspect.signature(WriteToRaccoon.__init__)
    docs = _docstring_args(WriteToRaccoon)
    expressions = _default_expressions(WriteToRaccoon.__init__)
    rows = []
    for name, parameter in signature.parameters.items():
        if name == "self":
            continue
        if parameter.default is inspect.Parameter.empty:
            default = "required"
        else:
            expression = expressions.get(name, repr(parameter.default))
            default = f"`{parameter.default!r}`"
            if expression.startswith("DEFAULT_"):
                default = f"`{parameter.default!r}` (`{expression}`)"
        expression = expressions.get(name, "")
        reason = constant_comment(WriteToRaccoon.__module__, expression) if expression.startswith("DEFAULT_") else ""
        rows.append(Parameter(name, default, docs.get(name, ""), reason))
    return rows


def write_parameters_table() -> str:
    return _table(
        ("parameter", "default", "what it does", "why this default"),
        ((f"`{row.name}`", row.default, _cell(row.description), _cell(row.reason)) for row in write_parameters()),
    )


def api_reference(package: str) -> str:
    """One mkdocstrings block per public name of ``package`` (its ``__all__``), at its defining module."""
    module = importlib.import_module(package)
    lazy: Dict[str, str] = getattr(module, "_LAZY", {})
    blocks = []
    for name in module.__all__:
        home = lazy.get(name) or getattr(getattr(module, name), "__module__", None) or package
        if not inspect.isclass(getattr(module, name)) and not inspect.isfunction(getattr(module, name)):
            home = package  # a constant: documented where the package defines it
        blocks.append(f"::: {home}.{name}\n")
    return "\n".join(blocks)


def emulator_settings_table() -> str:
    from raccoon_beam.emulator.cli import setting_flag
    from raccoon_beam.emulator.config import CONSOLE_TOKEN_ENV, EmulatorConfig, has_flag, setting_default

    rows = []
    for field in dataclasses.fields(EmulatorConfig):
        default = f"`{setting_default(field)!r}`"
        if "cli_default" in field.metadata:
            default += f" (command line: `{setting_default(field, cli=True)!r}`)"
        raccoon = field.metadata.get("raccoon")
        # A secret has no flag (a command line is visible to every user): its sources instead.
        flag = f"`{setting_flag(field)}`" if has_flag(field) else f"`${CONSOLE_TOKEN_ENV}` or `--console-token-file`"
        rows.append((f"`{field.name}`", flag, default, f"`{raccoon}`" if raccoon else "",
                     _cell(field.metadata["help"])))
    return _table(("setting", "flag", "default", "Raccoon setting", "what it does"), rows)


def fault_methods() -> Dict[str, inspect.Signature]:
    """The ``Faults`` methods that ``POST /_emulator/faults`` accepts, with their signatures."""
    from raccoon_beam.emulator import control
    from raccoon_beam.emulator.faults import Faults

    return {name: inspect.signature(getattr(Faults, name)) for name in control.fault_methods()}


def fault_methods_table() -> str:
    from raccoon_beam.emulator.faults import Faults

    rows = []
    for name, signature in fault_methods().items():
        arguments = ", ".join(
            f"`{p.name}`" if p.default is inspect.Parameter.empty else f"`{p.name}={p.default!r}`"
            for p in signature.parameters.values()
            if p.name != "self"
        )
        doc = (inspect.getdoc(getattr(Faults, name)) or "").split("\n\n", 1)[0]
        rows.append((f"`{name}`", arguments or "(none)", _cell(doc)))
    return _table(("method", "arguments", "what it does"), rows)


def control_routes() -> List[Dict[str, str]]:
    """The routes under ``/_emulator``, read from a running emulator (the console's included)."""
    import json
    import urllib.request

    from raccoon_beam.emulator import RaccoonEmulator

    with RaccoonEmulator() as emulator:
        with urllib.request.urlopen(emulator.http_base_url + "/_emulator", timeout=30) as answer:  # noqa: S310 (loopback)
            routes: List[Dict[str, str]] = json.load(answer)["routes"]
    return routes


def control_routes_table() -> str:
    return _table(
        ("method", "path", "what it does"),
        ((f"`{r['method']}`", f"`{r['path']}`", _cell(r["description"])) for r in control_routes()),
    )


GENERATORS: Dict[str, Callable[..., str]] = {
    "write-parameters": write_parameters_table,
    "api": api_reference,
    "emulator-settings": emulator_settings_table,
    "fault-methods": fault_methods_table,
    "control-routes": control_routes_table,
}


def expand(markdown: str) -> str:
    """``markdown`` with every marker replaced by what it asks for."""

    def replace(match: "re.Match[str]") -> str:
        generator = GENERATORS.get(match.group("what"))
        if generator is None:
            raise ValueError(f"unknown generated block {match.group(0)!r}; known: {', '.join(GENERATORS)}")
        arg: Optional[str] = match.group("arg")
        return generator(arg) if arg else generator()

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """The MkDocs hook: expands the markers of every page."""
    return expand(markdown)
