"""The exact dependency versions of ft's lock file, and ft's own wheel, for jobs and emitted scripts.

A job that installs different library versions from the ones tested here fails late, at `train()`. So a job installs
the runtime pins exported from `uv.lock` and the wheel of this very ft checkout, never "the latest" of anything.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ft.errors import FtError

EXPORT_ARGS = ["export", "--frozen", "--no-hashes", "--no-dev", "--no-emit-project"]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)\s*(?:;\s*(?P<marker>.+))?$")


@dataclass(frozen=True)
class Pin:
    """One locked requirement: `name==version`, with the environment marker that selects it, if any."""

    name: str
    version: str
    marker: str | None = None

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}" + (f" ; {self.marker}" if self.marker else "")


def project_root() -> Path:
    """Return the ft checkout that contains `pyproject.toml` and `uv.lock`. Raise FtError when ft runs from a wheel."""
    root = Path(__file__).resolve().parents[3]
    if (root / "pyproject.toml").is_file() and (root / "uv.lock").is_file():
        return root
    raise FtError("this ft is installed without its source checkout, so there is no uv.lock to pin the job's "
                  "dependencies with. Run the command from the ft repository: `uv run ft ...`.")


def uv_executable() -> str:
    found = shutil.which("uv")
    if not found:
        raise FtError("`uv` is not on PATH; it exports the lock file and builds the ft wheel. Install it "
                      "(https://docs.astral.sh/uv/) and run the command again.")
    return found


def run_uv(args: list[str], root: Path) -> str:
    result = subprocess.run([uv_executable(), *args], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise FtError(f"`uv {' '.join(args)}` failed in {root} (exit code {result.returncode}):\n"
                      f"{result.stderr.strip()[-2000:]}\nRun `uv lock` if pyproject.toml changed since uv.lock was "
                      "written.")
    return result.stdout


def export_requirements(root: Path | None = None) -> str:
    """Return the runtime pins of `uv.lock` as requirements text (no hashes, no dev group, ft itself left out).

    Raise FtError when uv.lock no longer matches pyproject.toml: `--frozen` would export the stale lock as it is.
    """
    root = root or project_root()
    check = subprocess.run([uv_executable(), "lock", "--check", "--offline"], cwd=root, capture_output=True, text=True)
    if check.returncode != 0:
        raise FtError(f"{root / 'uv.lock'} does not match pyproject.toml, so the job would install other versions "
                      f"than the ones declared. Run `uv lock` (and `uv sync`), then submit again.\n"
                      f"{check.stderr.strip()[-1000:]}")
    return run_uv(EXPORT_ARGS, root)


def parse_pins(requirements: str) -> list[Pin]:
    pins = []
    for line in requirements.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        if not match:
            raise FtError(f"unexpected line in the exported requirements: {line!r}. Check `uv export` by hand.")
        pins.append(Pin(match["name"], match["version"], match["marker"]))
    return pins


def find_pin(pins: list[Pin], name: str) -> list[Pin]:
    key = normalize_name(name)
    return [pin for pin in pins if normalize_name(pin.name) == key]


def select_pins(pins: list[Pin], python_version: str, platform: str = "linux", machine: str = "x86_64") -> list[Pin]:
    """Return the pins whose markers hold for the given Python version and platform (the job's environment)."""
    from packaging.markers import Marker

    environment = {"python_version": ".".join(python_version.split(".")[:2]), "python_full_version": python_version,
                   "sys_platform": platform, "platform_system": platform.capitalize(), "platform_machine": machine,
                   "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    return [pin for pin in pins if pin.marker is None or Marker(pin.marker).evaluate(environment)]


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def build_wheel(out_dir: Path, root: Path | None = None) -> Path:
    """Build ft's wheel from the checkout into `out_dir` and return its path."""
    root = root or project_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ft-wheel-") as temp:
        run_uv(["build", "--wheel", "--out-dir", temp], root)
        wheels = sorted(Path(temp).glob("ft-*.whl"))
        if len(wheels) != 1:
            raise FtError(f"`uv build --wheel` in {root} wrote {len(wheels)} ft wheels, expected one.")
        target = out_dir / wheels[0].name
        shutil.copyfile(wheels[0], target)
    return target


def wheel_name(version: str) -> str:
    return f"ft-{version}-py3-none-any.whl"


def uv_overrides(root: Path | None = None) -> list[str]:
    """Return `tool.uv.override-dependencies` from pyproject.toml: requirements that replace a dependency's own."""
    text = ((root or project_root()) / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r"^override-dependencies\s*=\s*\[(.*?)^\]", text, flags=re.MULTILINE | re.DOTALL)
    if not match:
        return []
    body = "\n".join(line for line in match.group(1).splitlines() if not line.strip().startswith("#"))
    return [single or double for single, double in re.findall(r"'([^']*)'|\"([^\"]*)\"", body)]


def requires_python(root: Path | None = None) -> str:
    """Return `project.requires-python` from pyproject.toml."""
    text = ((root or project_root()) / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^requires-python\s*=\s*"([^"]+)"', text, flags=re.MULTILINE)
    if not match:
        raise FtError("pyproject.toml has no project.requires-python line.")
    return match.group(1)
