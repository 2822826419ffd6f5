"""The creative fixtures (fake ComfyUI, app, watcher) serve the task tests too."""

from tests.creative.conftest import (  # noqa: F401
    creative_settings,
    fake_comfyui,
    studio_client,
    watcher,
)
