"""The Space's one model menu, shared by the Image and Video tabs.

The two models most visitors want (``fast`` and ``base``) are a short radio
choice; the registry's other models sit in a "More models" accordion. Picking
in one clears the other, and a hidden textbox holds the model in force: it is
what the tabs' handlers (and the API's ``mode`` parameter) read.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from inspyrenet_lite.registry import MODELS

COMMON_MODELS: tuple[tuple[str, str], ...] = (
    # (label that fits on one line, model name)
    ("fast: quick, 384 px", "fast"),
    ("base: finer edges, 1024 px, slower", "base"),
)
COMMON_NAMES = tuple(name for _, name in COMMON_MODELS)
MORE_NAMES = tuple(name for name in MODELS if name not in COMMON_NAMES)
DEFAULT_MODEL = "fast"


def more_choices() -> list[tuple[str, str]]:
    """(label, name) of every model besides the common two, in the registry's order."""
    return [(f"{name} ({MODELS[name].base_size[1]} px): {MODELS[name].summary}", name) for name in MORE_NAMES]


def pick_common(name: str | None) -> tuple[str, dict]:
    """A common model picked: it is in force, and the other menu is cleared."""
    return name or DEFAULT_MODEL, gr.update(value=None)


def pick_more(name: str | None) -> tuple[object, object]:
    """A model picked under "More models": it is in force, and the radio is cleared."""
    if not name:
        return gr.skip(), gr.skip()
    return name, gr.update(value=None)


@dataclass
class ModelMenu:
    """The menu's components and the events that change the model in force."""

    common: gr.Radio
    more: gr.Dropdown
    model: gr.Textbox  # hidden: the name in force
    picked: list  # Dependencies, for a tab to chain its own update with .then()


def build_model_menu() -> ModelMenu:
    """Add the menu to the enclosing ``gr.Blocks``."""
    with gr.Row(elem_id="model_menu"):
        common = gr.Radio(
            list(COMMON_MODELS),
            value=DEFAULT_MODEL,
            label="Model",
            info="fast suits most photos; base is slower and often cleaner on large ones.",
            elem_id="model_common",
            scale=1,
        )
        with gr.Column(scale=1):
            with gr.Accordion(f"More models ({len(MORE_NAMES)})", open=False, elem_id="more_models"):
                more = gr.Dropdown(
                    more_choices(),
                    value=None,
                    label="Other model",
                    info="The paper's, high-resolution and fine-structure models; each is fetched on first use.",
                    elem_id="model_more",
                )
    model = gr.Textbox(DEFAULT_MODEL, visible=False, label="Model in force", elem_id="model")
    picked = [
        common.input(pick_common, common, [model, more], api_visibility="private", queue=False),
        more.input(pick_more, more, [model, common], api_visibility="private", queue=False),
    ]
    return ModelMenu(common, more, model, picked)
