"""Workflow templates: the shipped text-to-image one and broken ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from palais.config import PACKAGE_DIR
from palais.creative.workflows import (
    TemplateError,
    check_workflow,
    load_template,
    template_names,
)
from palais.errors import ApiError

SHIPPED = PACKAGE_DIR / "creative" / "templates"


def test_shipped_txt2img_builds() -> None:
    assert "txt2img" in template_names(SHIPPED)
    template = load_template(SHIPPED, "txt2img")
    workflow = template.build("a lighthouse at dusk", 1234, 768, 512)

    classes = {node["class_type"] for node in workflow.values()}
    assert classes >= {
        "CheckpointLoaderSimple",
        "CLIPTextEncode",
        "KSampler",
        "VAEDecode",
        "SaveImage",
    }
    assert workflow["6"]["inputs"]["text"] == "a lighthouse at dusk"
    assert workflow["3"]["inputs"]["seed"] == 1234
    assert workflow["5"]["inputs"]["width"] == 768
    assert workflow["5"]["inputs"]["height"] == 512
    assert template.workflow["6"]["inputs"]["text"] == ""  # the original is kept


def write_template(folder: Path, name: str, workflow: object, meta: object) -> None:
    (folder / f"{name}.json").write_text(json.dumps(workflow))
    (folder / f"{name}.meta.json").write_text(json.dumps(meta))


GOOD = {"1": {"class_type": "X", "inputs": {"s": ""}}}


@pytest.mark.parametrize(
    ("workflow", "meta"),
    [
        ([], {"text_input": ["1", "s"]}),
        (GOOD, {}),
        (GOOD, {"text_input": ["9", "s"]}),
        (GOOD, {"text_input": "1.s"}),
        (GOOD, {"text_input": ["1", "s"], "seed_input": ["1"]}),
        (GOOD, ["not", "an", "object"]),
    ],
)
def test_broken_templates_rejected(tmp_path: Path, workflow, meta) -> None:  # noqa: ANN001
    write_template(tmp_path, "broken", workflow, meta)
    with pytest.raises(TemplateError, match="broken"):
        load_template(tmp_path, "broken")


def test_template_without_meta_not_listed(tmp_path: Path) -> None:
    (tmp_path / "lonely.json").write_text(json.dumps(GOOD))
    write_template(tmp_path, "paired", GOOD, {"text_input": ["1", "s"]})
    assert template_names(tmp_path) == ["paired"]
    assert template_names(tmp_path / "missing") == []


def test_check_workflow_limits() -> None:
    too_many = {str(i): {"class_type": "X", "inputs": {}} for i in range(1001)}
    with pytest.raises(ApiError) as caught:
        check_workflow(too_many)
    assert caught.value.status_code == 422
    assert "more than 1000 nodes" in caught.value.error
    assert check_workflow(GOOD) is GOOD
