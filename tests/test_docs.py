"""The documentation: every page reachable, every link resolving, the generated tables whole, the programs running.

``make docs`` (in ``.ci/run``) builds the site with ``mkdocs build --strict``;
these tests check what the build cannot see, and run the code blocks that are
complete programs (fenced ```python title="name.py"```) against the emulator.
"""

from __future__ import annotations

import inspect
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
from typing import Dict, Iterator, List, Tuple

import pytest
import yaml
from markdown.extensions.toc import slugify

from raccoon_beam.emulator import RaccoonEmulator
from raccoon_beam.emulator.process import EmulatorProcess
from tools import docs_hooks

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TOP_PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md"]


HOOKS = docs_hooks


def _nav_pages(nav) -> Iterator[str]:
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            yield from _nav_pages(value)
        else:
            yield value


def _config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def _pages() -> List[pathlib.Path]:
    return sorted(DOCS.rglob("*.md")) + TOP_PAGES


def _without_code(text: str) -> str:
    return re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.MULTILINE | re.DOTALL)


def _anchors(page: pathlib.Path) -> set:
    text = HOOKS.expand(page.read_text(encoding="utf-8")) if page.parent == DOCS else page.read_text("utf-8")
    headings = re.findall(r"^#{1,6} (.+?)\s*$", _without_code(text), flags=re.MULTILINE)
    anchors = {slugify(re.sub(r"[`*]", "", heading), "-") for heading in headings}
    # mkdocstrings' ids: raccoon_beam.io.WriteToRaccoon and its members.
    anchors |= {m for m in re.findall(r"^::: ([\w.]+)", text, flags=re.MULTILINE)}
    return anchors


def _links(page: pathlib.Path) -> Iterator[Tuple[str, str]]:
    for target in re.findall(r"\]\(([^)\s]+)\)", _without_code(page.read_text(encoding="utf-8"))):
        if not re.match(r"^[a-z]+:", target):
            path, _, anchor = target.partition("#")
            yield path, anchor


def test_every_page_is_in_the_navigation_and_every_nav_entry_exists():
    nav = list(_nav_pages(_config()["nav"]))
    assert len(nav) == len(set(nav)), "a page is listed twice"
    for page in nav:
        assert (DOCS / page).is_file(), f"mkdocs.yml lists {page}, which does not exist"
    listed = {DOCS / page for page in nav}
    missing = [str(p.relative_to(ROOT)) for p in sorted(DOCS.rglob("*.md")) if p not in listed]
    assert missing == [], f"pages not reachable from the navigation: {missing}"


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for page in _pages():
        for path, anchor in _links(page):
            target = (page.parent / path).resolve() if path else page
            if not target.exists():
                broken.append(f"{page.relative_to(ROOT)}: {path}")
            elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
                broken.append(f"{page.relative_to(ROOT)}: {path}#{anchor} (no such heading)")
    assert broken == []


def test_the_readme_stays_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines < 200, f"README.md has {lines} lines; move the details into docs/"


def test_the_configuration_reference_has_every_parameter_with_what_it_does():
    from raccoon_beam import WriteToRaccoon

    table = HOOKS.write_parameters_table()
    parameters = [name for name in inspect.signature(WriteToRaccoon.__init__).parameters if name != "self"]
    for name in parameters:
        assert f"| `{name}` |" in table, name
    rows = {row.name: row for row in HOOKS.write_parameters()}
    assert sorted(rows) == sorted(parameters)
    undocumented = [name for name, row in rows.items() if not row.description.strip()]
    assert undocumented == [], f"parameters without an Args: entry in WriteToRaccoon's docstring: {undocumented}"
    assert "buffering_clock" not in rows, "a test hook is not a parameter"
    # A default held by a DEFAULT_* constant carries the constant's reason.
    assert "Kafka" in rows["timeout"].reason
    assert "<!-- generated: write-parameters -->" in (DOCS / "configuration.md").read_text(encoding="utf-8")


def test_the_api_reference_lists_the_public_api_only():
    import raccoon_beam
    import raccoon_beam.emulator
    import raccoon_beam.yaml

    for package in (raccoon_beam, raccoon_beam.emulator, raccoon_beam.yaml):
        blocks = re.findall(r"^::: ([\w.]+)$", HOOKS.api_reference(package.__name__), flags=re.MULTILINE)
        assert [block.rsplit(".", 1)[1] for block in blocks] == list(package.__all__)
        assert not any("._" in block for block in blocks)
    page = (DOCS / "api.md").read_text(encoding="utf-8")
    assert re.findall(r"<!-- generated: api ([\w.]+) -->", page) == [
        "raccoon_beam",
        "raccoon_beam.emulator",
        "raccoon_beam.yaml",
    ]


def test_the_emulator_page_has_every_setting_fault_method_and_route():
    from raccoon_beam.emulator.config import EmulatorConfig

    settings = HOOKS.emulator_settings_table()
    for field in EmulatorConfig.__dataclass_fields__:
        assert f"| `{field}` |" in settings
    faults = HOOKS.fault_methods_table()
    for method in HOOKS.fault_methods():
        assert f"| `{method}` |" in faults
    page = (DOCS / "emulator.md").read_text(encoding="utf-8")
    for marker in ("emulator-settings", "fault-methods", "control-routes"):
        assert f"<!-- generated: {marker} -->" in page


# ------------------------------------------------------------ code blocks

PROGRAM = re.compile(r'^```python title="(?P<name>[\w.-]+\.py)"\n(?P<code>.*?)^```', re.MULTILINE | re.DOTALL)


def _programs() -> Dict[str, str]:
    """Every complete program of the docs and the README, by its title (the same program may appear twice)."""
    programs: Dict[str, str] = {}
    for page in _pages():
        for match in PROGRAM.finditer(page.read_text(encoding="utf-8")):
            name, code = match.group("name"), match.group("code")
            assert programs.setdefault(name, code) == code, f"two different programs are called {name}"
    return programs


CLICKS = [
    {"event_name": "click", "id": 1},
    {"event_name": "page_view", "id": 2},
    "not json at all",
    {"event_name": "click", "id": 3},
    "[1, 2, 3]",
    "",
    {"id": 4},  # no event_name: a dead letter of the sink (stage serialize)
]


def _write_clicks(directory: pathlib.Path) -> None:
    lines = [json.dumps(line) if isinstance(line, dict) else line for line in CLICKS]
    (directory / "clicks.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _run(program: str, directory: pathlib.Path, endpoint: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, RACCOON_ENDPOINT=endpoint, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, program], cwd=directory, env=env, capture_output=True, text=True, timeout=240
    )


def test_the_docs_have_the_programs_the_readme_promises():
    assert {"quickstart.py", "test_clicks.py"} <= set(_programs())


def _readme_quickstart_commands() -> Tuple[List[str], str]:
    """The README's two commands that run the quickstart: the emulator's flags, and the program's endpoint."""
    commands = [command for page, command in _commands() if page == "README.md"]
    emulator = next(c for c in commands if c.startswith("raccoon-emulator"))
    program = next(c for c in commands if c.endswith("python quickstart.py"))
    endpoint = re.match(r"RACCOON_ENDPOINT=(\S+) python quickstart.py$", program)
    assert endpoint, program
    return emulator.split()[1:], endpoint.group(1)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", sorted(_programs()))
def test_every_complete_program_runs(name, tmp_path):
    (tmp_path / name).write_text(_programs()[name], encoding="utf-8")
    _write_clicks(tmp_path)
    if name != "quickstart.py":
        with RaccoonEmulator(ack="sync") as emulator:
            proc = _run(name, tmp_path, emulator.grpc_endpoint)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return
    # As the README says: `raccoon-emulator ...` (on free ports here), then the program.
    flags, endpoint = _readme_quickstart_commands()
    assert endpoint.startswith("grpc://")
    with EmulatorProcess(args=flags, capture="events") as emulator:
        proc = _run(name, tmp_path, emulator.grpc_endpoint)
        captured = sorted(json.loads(event.event_bytes)["id"] for event in emulator.events())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # The good lines delivered; the malformed ones and the sink's dead letter in the file.
    assert captured == [1, 2, 3]
    letters = [json.loads(line) for line in (tmp_path / "dead_letters.jsonl").read_text().splitlines()]
    by_stage = sorted((letter["stage"], letter["element"]) for letter in letters)
    assert by_stage == [
        ("parse", ""),
        ("parse", "[1, 2, 3]"),
        ("parse", "not json at all"),
        ("serialize", '{"id":4}'),
    ]
    assert all(letter["error"] for letter in letters)


# ------------------------------------------------------------ commands

SHELL_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _commands() -> List[Tuple[str, str]]:
    commands = []
    for page in _pages():
        for block in SHELL_BLOCK.findall(page.read_text(encoding="utf-8")):
            for line in block.replace("\\\n", " ").splitlines():
                command = line.split(" #", 1)[0].strip()
                if command and not command.startswith("#"):
                    commands.append((str(page.relative_to(ROOT)), command))
    return commands


def test_every_make_target_in_the_docs_exists():
    targets = sorted({cmd.split()[1] for _, cmd in _commands() if cmd.startswith("make ")})
    assert "sample" in targets and "test" in targets
    for target in targets:
        proc = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, f"make {target}: {proc.stderr}"


def test_every_file_and_module_a_command_runs_exists():
    import importlib.util

    for page, command in _commands():
        words = command.split()
        for word in words:
            if re.match(r"^(pipelines|tests|benchmarks|docs)/[\w/.-]+\.(py|yaml)$", word):
                assert (ROOT / word).exists(), f"{page}: {command}"
        for python, flag, module in zip(words, words[1:], words[2:]):
            if python.endswith("python") and flag == "-m" and module != "pytest":
                assert importlib.util.find_spec(module) is not None, f"{page}: {command}"


def test_the_emulator_flags_in_the_docs_exist():
    from raccoon_beam.emulator.cli import build_parser

    parser = build_parser()
    for _, command in _commands():
        if command.startswith("raccoon-emulator"):
            parser.parse_args(command.split()[1:])  # exits (SystemExit) on an unknown flag


# ------------------------------------------------------------ a clone that stands alone


def _repository_text_files() -> List[pathlib.Path]:
    git = shutil.which("git")
    if git and (ROOT / ".git").exists():
        names = subprocess.run([git, "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        files = [ROOT / name for name in names.splitlines()]
    else:
        files = [p for p in ROOT.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts]
    return [f for f in files if f.is_file() and f.suffix in {".py", ".md", ".yaml", ".yml", ".toml", ".proto", ".txt", ".js", ".html", ".cfg", ""}]


def test_no_reference_to_files_outside_the_repository_or_to_tracker_issues():
    forbidden = re.compile(
        r"shared/|RACCOON_PROTOCOL|DESIGN\.md|\bissues? \d+|\bissue #\d+|\(#\d+\)", flags=re.IGNORECASE
    )
    this_file = pathlib.Path(__file__).resolve()
    found = []
    for path in _repository_text_files():
        if path.resolve() == this_file or "_proto" in path.parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if forbidden.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert found == []


def test_the_configuration_reference_lists_every_metric():
    import raccoon_beam.io as sink

    source = (ROOT / "raccoon_beam" / "io.py").read_text(encoding="utf-8")
    names = set(re.findall(r'counter\("(\w+)"\)', source))
    names |= set(re.findall(r'distribution\(METRICS_NAMESPACE, "(\w+)"\)', source))
    names.add(sink._EVENTS_DEAD_LETTERED)
    assert len(names) >= 10
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert [name for name in sorted(names) if f"| `{name}`" not in page] == []
