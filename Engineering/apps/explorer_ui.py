"""The browser explorer: a local Gradio page over an :class:`~Engineering.apps.explorer_session.Explorer`.

The page is served from this machine only (127.0.0.1 unless ``--host`` says otherwise), with Gradio's analytics
and version check off and the theme's fonts served by Gradio itself, so it works without any network. Every
action reports its outcome in the status line at the top: a bad upload or subject ID is a readable one-line
message there, never a traceback page (an unexpected failure is logged with its traceback on the console).
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported: set it before

from Engineering.apps.explorer_session import Explorer, SubjectView  # noqa: E402
from Engineering.errors import ImLatentError  # noqa: E402

log = logging.getLogger("imlatent")

ALPHA_RANGE = 3.0  # sliders run from -3 to +3 standard deviations
ALPHA_STEP = 0.25
STATUS_ID = "explorer-status"
ERROR_CLASS = "explorer-error"
CSS = f"""
#{STATUS_ID} .explorer-ok {{ padding: 6px 10px; border-radius: 6px; background: #eef6ee; color: #1d4d1d; }}
#{STATUS_ID} .{ERROR_CLASS} {{ padding: 6px 10px; border-radius: 6px; background: #fdecea; color: #7a1a12;
    border: 1px solid #e0a39c; font-weight: 600; }}
"""


def ok(text: str) -> str:
    return f'<div class="explorer-ok">{html.escape(text)}</div>'


def error(text: str) -> str:
    return f'<div class="{ERROR_CLASS}" role="alert">{html.escape(text)}</div>'


def guarded(
    n_outputs: int, action: Callable[..., tuple[Any, ...]], unchanged: Callable[[], Any]
) -> Callable[..., tuple[Any, ...]]:
    """``action`` whose last output is the status line; on a failure the other outputs are ``unchanged()``.

    The user's mistakes (:class:`ImLatentError`) are shown as their one line; anything else as its type and
    first line, with the traceback logged on the console for a bug report.
    """

    def run(*args: Any) -> tuple[Any, ...]:
        try:
            return action(*args)
        except ImLatentError as err:
            message = " ".join(str(err).split())
        except Exception as err:  # noqa: BLE001 - the page must stay usable whatever failed
            log.exception("explorer action failed")
            first = str(err).splitlines()[0] if str(err) else ""
            message = f"internal error ({type(err).__name__}: {first}); the traceback is in the server's log"
        return (*(unchanged() for _ in range(n_outputs - 1)), error(message))

    return run


def build_app(explorer: Explorer) -> Any:
    """The Gradio Blocks page of ``explorer`` (not launched)."""
    import gradio as gr

    n_dirs = len(explorer.directions)

    def guard(n_outputs: int, action: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
        return guarded(n_outputs, action, gr.skip)

    with gr.Blocks(title="ImLatent explorer", analytics_enabled=False) as app:
        view = gr.State(None)
        gr.Markdown("## ImLatent explorer\n" + explorer.describe())
        status = gr.HTML(ok("Pick a subject (or upload a file) and press Load."), elem_id=STATUS_ID)
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                subjects = explorer.subjects()
                subject = gr.Dropdown(
                    subjects,
                    value=subjects[0] if subjects else None,
                    label=f"Subject of {explorer.data_file_name()}",
                    allow_custom_value=True,
                    elem_id="explorer-subject",
                )
                load_button = gr.Button("Load subject", variant="primary", elem_id="explorer-load")
                upload = gr.File(
                    label="…or upload a NIfTI or one-series HDF5", type="filepath", elem_id="explorer-upload"
                )
                upload_button = gr.Button("Load upload", elem_id="explorer-load-upload")
                frame = gr.Slider(0, 1, value=0, step=1, label="frame (time / slice)", elem_id="explorer-frame")
                sliders = [
                    gr.Slider(
                        -ALPHA_RANGE,
                        ALPHA_RANGE,
                        value=0.0,
                        step=ALPHA_STEP,
                        label=f"{d.label} (α, SD)",
                        elem_id=f"explorer-direction-{n}",
                    )
                    for n, d in enumerate(explorer.directions)
                ]
                reset = gr.Button("Reset directions to 0", elem_id="explorer-reset", visible=n_dirs > 0)
            with gr.Column(scale=3):
                panels = gr.Image(show_label=False, format="png", elem_id="explorer-panels")
                with gr.Row():
                    bars = gr.Image(show_label=False, format="png", elem_id="explorer-bars")
                    latent_map = gr.Image(show_label=False, format="png", elem_id="explorer-map")

        def figures(v: SubjectView, t: int) -> tuple[Any, ...]:
            return explorer.panels(v, t), explorer.bars(v, t), explorer.map(v)

        def loaded(v: SubjectView) -> tuple[Any, ...]:
            note = (
                f"Loaded {v.series.key} ({v.n_frames} frames): encoded, DDIM-inverted and reconstructed with "
                f"{explorer.ddim_steps} steps each in {v.seconds:.1f} s."
            )
            new_frame = gr.Slider(minimum=0, maximum=max(v.n_frames - 1, 1), value=0)  # a slider needs min < max
            return (v, *figures(v, 0), new_frame, *([0.0] * n_dirs), ok(note))

        def moved(v: SubjectView | None, t: int, *alphas: float) -> tuple[Any, ...]:
            if v is None:
                raise ImLatentError("load a subject first; the sliders move its latent")
            v = explorer.move(v, list(alphas))
            if v.moved is None:
                note = "All directions at 0: showing the reconstruction."
            else:
                note = f"Decoded the moved latent with {explorer.ddim_steps} DDIM steps in {v.seconds:.1f} s."
            return (v, *figures(v, t), ok(note))

        def reframed(v: SubjectView | None, t: int) -> tuple[Any, ...]:
            if v is None:
                return (gr.skip(), gr.skip())
            # one latent per frame only in 2D; the map shows every frame's latent, so it never changes here
            return explorer.panels(v, t), explorer.bars(v, t) if v.z.shape[0] > 1 else gr.skip()

        load_outputs = [view, panels, bars, latent_map, frame, *sliders, status]
        load_button.click(guard(len(load_outputs), lambda s: loaded(explorer.load(s))), [subject], load_outputs)
        upload_button.click(
            guard(len(load_outputs), lambda f: loaded(explorer.load_upload(_required_upload(f)))),
            [upload],
            load_outputs,
        )
        move_outputs = [view, panels, bars, latent_map, status]
        for slider in sliders:
            slider.release(guard(len(move_outputs), moved), [view, frame, *sliders], move_outputs)
        reset.click(
            guard(len(move_outputs) + n_dirs, lambda v, t: (*([0.0] * n_dirs), *moved(v, t, *([0.0] * n_dirs)))),
            [view, frame],
            [*sliders, *move_outputs],
        )
        frame_outputs = [panels, bars]
        # input (not change): fires on the user's moves only, not when loading a subject resets the slider
        frame.input(
            guard(len(frame_outputs) + 1, lambda v, t: (*reframed(v, t), gr.skip())),
            [view, frame],
            [*frame_outputs, status],
            trigger_mode="always_last",
        )
    return app


def _required_upload(path: str | None) -> str:
    if not path:
        raise ImLatentError("no file uploaded; drop a .nii, .nii.gz, .h5 or .hdf5 file on the upload box first")
    return path


def launch(explorer: Explorer, host: str, port: int) -> Any:
    """Serve the page on ``host:port`` until interrupted (no share link, no analytics, fonts served locally)."""
    import gradio as gr

    app = build_app(explorer)
    app.queue(default_concurrency_limit=1)  # one CPU-heavy action at a time; others wait in line
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        show_error=False,
        css=CSS,
        theme=gr.themes.Default(),
        footer_links=[],
    )
    return app


__all__ = ["build_app", "guarded", "launch"]
