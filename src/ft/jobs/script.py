"""`ft submit --emit-script FILE`: a self-contained uv script (PEP 723) that runs this config's training.

The script's inline metadata pins every runtime dependency to its version in `uv.lock`. ft itself is not on PyPI, so
by default the script depends on the ft wheel built from this checkout and written beside it, which
`[tool.uv.sources]` names by a path relative to the script. The overrides of ft's pyproject.toml come along, so that
`uv run` resolves exactly as `uv lock` did. `--ft-source URL` replaces the wheel by any PEP 508
direct reference (`git+https://...`, `https://.../ft-0.1.0-py3-none-any.whl`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ft import __version__
from ft.config import LoadedConfig
from ft.jobs.pins import build_wheel, export_requirements, parse_pins, requires_python, uv_overrides
from ft.jobs.spec import dump_config, embed_chat_template, rewrite_data_paths


def script_config(loaded: LoadedConfig) -> str:
    """Return the resolved config with local paths made absolute, so the script runs from any folder."""
    tree = loaded.config.model_dump()
    rewrite_data_paths(tree, lambda key, path: str(path))
    model_path = Path(tree["model"]["name"]).expanduser()
    if model_path.exists():
        tree["model"]["name"] = str(model_path.resolve())
    embed_chat_template(tree)
    tree["output"]["dir"] = str(Path(tree["output"]["dir"]).expanduser().resolve())
    return dump_config(tree, f"Resolved from {loaded.path} by ft submit --emit-script.")


def python_literal(text: str) -> str:
    """Return `text` as a Python string literal: a readable triple-quoted raw string when that is exact, else repr."""
    if '"""' not in text and not text.endswith("\\") and "\r" not in text:
        return 'r"""' + text + '"""'
    return repr(text)


def render_script(config_yaml: str, config_stem: str, pins: list[str], python_spec: str, ft_dependency: str,
                  wheel: str | None, overrides: list[str]) -> str:
    dependencies = "".join(f"#   {json.dumps(item)},\n" for item in [*pins, ft_dependency])
    settings = ""
    if overrides:
        settings += f"# [tool.uv]\n# override-dependencies = {json.dumps(overrides)}\n"
    if wheel:
        settings += f"# [tool.uv.sources]\n# ft = {{ path = {json.dumps(wheel)} }}\n"
    return f"""# /// script
# requires-python = {json.dumps(python_spec)}
# dependencies = [
{dependencies}# ]
{settings}# ///
# Run: uv run THIS_FILE [--set KEY=VALUE ...]
# Written by ft {__version__} (`ft submit --emit-script`): fine-tunes with the config below. The dependency versions
# are those of ft's uv.lock. Extra arguments go to `ft train`.
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

CONFIG_YAML = {python_literal(config_yaml)}


def main() -> int:
    from ft.cli import main as ft_main

    with tempfile.TemporaryDirectory(prefix="ft-script-") as folder:
        config_path = Path(folder) / {json.dumps(config_stem + ".yaml")}
        config_path.write_text(CONFIG_YAML, encoding="utf-8")
        return ft_main(["train", str(config_path), *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
"""


def emit_script(loaded: LoadedConfig, target: Path, ft_source: str | None = None) -> tuple[Path, Path | None]:
    """Write the script (and the ft wheel beside it unless `ft_source` is given); return both paths."""
    from ft.outputs import write_text_atomic

    pins = [pin.requirement for pin in parse_pins(export_requirements())]
    wheel = None
    if ft_source:
        dependency = f"ft @ {ft_source}"
    else:
        wheel = build_wheel(target.parent.resolve())
        dependency = f"ft=={__version__}"
    text = render_script(script_config(loaded), loaded.path.stem, pins, requires_python(), dependency,
                         wheel.name if wheel else None, uv_overrides())
    write_text_atomic(target, text)
    return target, wheel
