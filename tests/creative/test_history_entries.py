"""Reading recorded ComfyUI history entries into job outcomes."""

from __future__ import annotations

import json

import pytest

from palais.creative.jobs import output_refs, read_history_entry
from tests.conftest import DATA

HTTP = DATA / "comfyui" / "http"


def recorded_entry(name: str) -> dict:
    body = json.loads((HTTP / f"{name}.json").read_text())["response"]["json"]
    return next(iter(body.values()))


@pytest.mark.parametrize(
    ("fixture", "status", "error_part", "outputs"),
    [
        ("history_by_id_ok", "success", None, 1),
        ("history_by_id_cached", "success", None, 1),
        ("history_by_id_batch2", "success", None, 2),
        ("history_by_id_partial", "success", None, 1),
        (
            "history_by_id_execution_error",
            "error",
            "node 2 (SaveImage): **** ERROR: Saving image outside",
            0,
        ),
        ("history_by_id_interrupted", "interrupted", "interrupted at node 3", 8),
        (
            "history_by_id_interrupted_mid_node",
            "interrupted",
            "interrupted at node 2 (TestSleep)",
            0,
        ),
    ],
)
def test_recorded_outcomes(
    fixture: str, status: str, error_part: str | None, outputs: int
) -> None:
    outcome = read_history_entry(recorded_entry(fixture))
    assert outcome.status == status
    if error_part is None:
        assert outcome.error is None
    else:
        assert error_part in outcome.error
    assert len(outcome.outputs) == outputs
    assert outcome.finished_at is not None
    assert outcome.started_at is not None


def test_deleted_job_has_no_entry() -> None:
    body = json.loads((HTTP / "history_by_id_deleted_from_queue.json").read_text())
    assert body["response"]["json"] == {}


def test_blocked_error_without_timestamp() -> None:
    entry = {
        "status": {
            "status_str": "error",
            "completed": False,
            "messages": [
                ["execution_start", {"prompt_id": "p", "timestamp": 1}],
                [
                    "execution_error",
                    {
                        "prompt_id": "p",
                        "node_id": "4",
                        "node_type": "Blocker",
                        "exception_type": "ExecutionBlocked",
                        "exception_message": "blocked",
                        "traceback": [],
                        "current_inputs": [],
                        "current_outputs": [],
                    },
                ],
            ],
        },
        "outputs": {},
    }
    outcome = read_history_entry(entry)
    assert outcome.status == "error"
    assert outcome.error == "node 4 (Blocker): blocked"
    assert outcome.finished_at is None


def test_output_refs_skip_previews_and_junk() -> None:
    outputs = {
        "9": {
            "images": [
                {"filename": "a.png", "subfolder": "", "type": "output"},
                {"filename": "b.png", "subfolder": "", "type": "temp"},
                {"subfolder": "x"},
                "junk",
            ]
        },
        "10": {"text": ["not an image"]},
        "11": "junk",
    }
    assert output_refs(outputs) == [
        {"node_id": "9", "filename": "a.png", "subfolder": "", "type": "output"}
    ]
    assert output_refs(None) == []
