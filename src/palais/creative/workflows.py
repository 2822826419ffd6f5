"""Workflow templates for quick generate, and checks of API-format graphs.

A template is ``NAME.json`` (a workflow in ComfyUI's API format) beside
``NAME.meta.json``, which names the inputs that receive the text, the seed,
the width and the height as ``[node_id, input_name]`` pairs.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from palais.errors import ApiError, invalid

TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
DEFAULT_TEMPLATE = "txt2img"
MAX_NODES = 1000
INPUT_KEYS = ("text_input", "seed_input", "width_input", "height_input")


class TemplateError(ValueError):
    """A template file is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class Template:
    name: str
    workflow: dict[str, Any]
    text_input: tuple[str, str]
    seed_input: tuple[str, str] | None
    width_input: tuple[str, str] | None
    height_input: tuple[str, str] | None
    description: str = ""

    def build(
        self, text: str, seed: int | None, width: int | None, height: int | None
    ) -> dict[str, Any]:
        """Return a copy of the workflow with the given values in place."""
        workflow = copy.deepcopy(self.workflow)
        _set_input(workflow, self.text_input, text)
        if self.seed_input is not None and seed is not None:
            _set_input(workflow, self.seed_input, seed)
        if self.width_input is not None and width is not None:
            _set_input(workflow, self.width_input, width)
        if self.height_input is not None and height is not None:
            _set_input(workflow, self.height_input, height)
        return workflow


def _set_input(workflow: dict[str, Any], target: tuple[str, str], value: Any) -> None:
    node_id, name = target
    workflow[node_id]["inputs"][name] = value


def template_names(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    names = []
    for path in directory.glob("*.json"):
        name = path.name.removesuffix(".json")
        if name.endswith(".meta") or not TEMPLATE_NAME.match(name):
            continue
        if (directory / f"{name}.meta.json").is_file():
            names.append(name)
    return sorted(names)


def load_template(directory: Path, name: str) -> Template:
    """Read and check one template; raise TemplateError when it is broken."""
    workflow_path = directory / f"{name}.json"
    meta_path = directory / f"{name}.meta.json"
    try:
        workflow = json.loads(workflow_path.read_text(encoding="utf-8"))
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TemplateError(f"template {name!r} cannot be read: {exc}") from None

    problem = workflow_problem(workflow)
    if problem is not None:
        raise TemplateError(f"template {name!r}: {problem}")
    if not isinstance(meta, dict):
        raise TemplateError(f"template {name!r}: {meta_path.name} is not an object")

    targets = {key: _target(workflow, meta, key, name) for key in INPUT_KEYS}
    if targets["text_input"] is None:
        raise TemplateError(f"template {name!r}: text_input is required")
    description = meta.get("description")
    return Template(
        name=name,
        workflow=workflow,
        text_input=targets["text_input"],
        seed_input=targets["seed_input"],
        width_input=targets["width_input"],
        height_input=targets["height_input"],
        description=description if isinstance(description, str) else "",
    )


def _target(
    workflow: dict[str, Any], meta: dict[str, Any], key: str, name: str
) -> tuple[str, str] | None:
    value = meta.get(key)
    if value is None:
        return None
    valid = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(part, str) for part in value)
    )
    if not valid or value[0] not in workflow:
        raise TemplateError(
            f"template {name!r}: {key} must be [node_id, input_name] of a node "
            f"in the workflow, not {value!r}"
        )
    return (value[0], value[1])


def workflow_problem(workflow: Any) -> str | None:
    """Describe why a value is not an API-format workflow, or return None."""
    if not isinstance(workflow, dict) or not workflow:
        return "the workflow must be a non-empty object of nodes"
    if len(workflow) > MAX_NODES:
        return f"the workflow has more than {MAX_NODES} nodes"
    for node_id, node in workflow.items():
        if not isinstance(node, dict):
            return f"node {node_id!r} is not an object"
        if not isinstance(node.get("class_type"), str) or not node["class_type"]:
            return f"node {node_id!r} has no class_type"
        if not isinstance(node.get("inputs", {}), dict):
            return f"node {node_id!r} has inputs that are not an object"
    return None


def check_workflow(workflow: Any, field: str = "workflow") -> dict[str, Any]:
    """Return the workflow, or raise a 422 that names what is wrong with it."""
    problem = workflow_problem(workflow)
    if problem is not None:
        raise ApiError(
            422,
            f"{field}: invalid workflow: {problem}",
            field=field,
            accepted="a ComfyUI workflow in API format: "
            '{"<node id>": {"class_type": "...", "inputs": {...}}}',
        )
    return workflow


def resolve_template(directory: Path, name: Any) -> Template:
    """Load the named template, or raise a 422 that lists the ones available."""
    names = template_names(directory)
    accepted = "one of " + ", ".join(names) if names else "no template is installed"
    if not isinstance(name, str) or name not in names:
        raise invalid("template", name, accepted, "unknown")
    try:
        return load_template(directory, name)
    except TemplateError as exc:
        raise ApiError(
            422, f"template: {exc}", field="template", value=name, accepted=accepted
        ) from None
