"""Which projects offer a command: `projects/<name>/<command>.py` (`pipeline.py`, `generate.py`).

`avgen pipeline` and `avgen generate` take a project by name. Looking at the files first, instead of
catching the ImportError of `import projects.<name>.<command>`, tells a project that is not there (or not
finished) apart from a project whose module fails to import for another reason (a missing dependency),
which must keep its traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

from shared.runs import UserError


def _projects_root() -> Path:
    spec = importlib.util.find_spec("projects")  # by name: `shared` never imports `projects` statically
    return Path(next(iter(spec.submodule_search_locations)))


def projects_with(command: str) -> list[str]:
    """The projects that have `projects/<name>/<command>.py`, sorted."""
    return sorted(
        folder.name
        for folder in _projects_root().iterdir()
        if (folder / "__init__.py").is_file() and (folder / f"{command}.py").is_file()
    )


def project_module(project: str, command: str) -> ModuleType:
    """`projects.<project>.<command>`; a UserError naming the projects that have one if this one has not."""
    available = projects_with(command)
    if project not in available:
        listing = f"projects that have it: {', '.join(available) or 'none'}"
        if (_projects_root() / project / "__init__.py").is_file():
            raise UserError(f"project {project!r} has no `avgen {command}` yet; {listing}")
        raise UserError(f"no project {project!r} (for `avgen {command}`); {listing}")
    return importlib.import_module(f"projects.{project}.{command}")
