"""The Knowledge bases tab: create, upload files, list and delete documents, rebuild, repair, delete.

:class:`KnowledgeBaseTab` builds the tab's components (in its constructor, inside a ``gr.Blocks``),
holds its handlers as methods that tests call directly, and wires its events in
:meth:`KnowledgeBaseTab.wire`. Handlers return dicts keyed by this tab's components; an action that
may change the list of knowledge bases also writes a :class:`~ui.shared.KbListChanged` into the
shared ``kb_list`` State, which the other tabs listen to. Uploads, rebuilds and repairs run in the
``index`` queue group, so indexing never blocks an answer.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from kb.ui_support import FileOutcome, IngestProgress, file_outcomes, human_size, stage_uploads
from ui.render import esc, render_documents, render_error, render_outcomes, render_rebuild_hint
from ui.shared import KbListChanged, Shared, announce, kb_names, pick, user_errors
from vector_store import StoreError

if TYPE_CHECKING:
    from kb.services import Services

INDEX_CONCURRENCY = 1
"""Uploads/rebuilds at once; a separate queue group from chat, so indexing never blocks answers."""

Update = dict[Any, Any]


def supported_extensions() -> str:
    """The file types the loaders read, for the upload hint."""
    from loaders import supported_extensions

    return " ".join(sorted(supported_extensions()))


def _bar(progress: gr.Progress) -> IngestProgress:
    return IngestProgress(lambda frac, desc: progress(frac, desc=desc))


class KnowledgeBaseTab:
    """The Knowledge bases tab over ``services``; build it inside ``gr.Blocks``, then call :meth:`wire`."""

    def __init__(self, services: Services, shared: Shared) -> None:
        self.services = services
        self.kbs = services.kbs
        self.ingestor = services.ingestor
        self.shared = shared
        self.max_bytes = services.settings.server.max_upload_mb * 1024 * 1024
        self._user_errors = user_errors()
        self._layout()

    # ------------------------------------------------------------------ layout
    def _layout(self) -> None:
        names = kb_names(self.kbs)
        first = names[0] if names else None
        with gr.Tab("知识库 Knowledge bases", id="kbs", elem_id="tab-kbs"):
            with gr.Row():
                self.select = gr.Dropdown(
                    names, value=first, label="知识库 · knowledge base", elem_id="kb-select", scale=3
                )
                self.refresh_button = gr.Button("↻", elem_id="kb-refresh", scale=0, min_width=50)
                self.new_name = gr.Textbox(
                    label="新建 · new knowledge base",
                    placeholder="e.g. 红楼梦",
                    elem_id="kb-new-name",
                    scale=2,
                )
                self.create_button = gr.Button("➕ 新建 Create", elem_id="kb-create", scale=1)
            self.overview_html = gr.HTML(self.overview(first), elem_id="kb-overview")
            gr.Markdown(
                f"**上传文件 · upload files** — several at once; supported: `{supported_extensions()}`; "
                f"up to {human_size(self.max_bytes)} per file."
            )
            self.files = gr.File(
                file_count="multiple", type="filepath", label="files", elem_id="kb-upload", height=140
            )
            self.add_button = gr.Button(
                "⬆ 添加到知识库 · Add to knowledge base", variant="primary", elem_id="kb-add"
            )
            self.result = gr.HTML("", elem_id="kb-result", min_height=60)
            gr.Markdown("**文档 · documents**")
            self.docs = gr.HTML(render_documents([]), elem_id="kb-docs")
            with gr.Row():
                self.doc_pick = gr.Dropdown(
                    [],
                    value=[],
                    multiselect=True,
                    label="documents to delete",
                    elem_id="kb-doc-pick",
                    scale=4,
                )
                self.doc_delete_button = gr.Button(
                    "删除文档 · Delete documents", elem_id="kb-doc-delete", scale=1
                )
            with gr.Accordion("从服务器文件夹重建 · rebuild from a folder on the server", open=False):
                gr.Markdown(
                    "Indexes exactly the folder's supported files (sub-folders included). The current "
                    "index keeps answering until the new one is complete."
                )
                with gr.Row():
                    self.folder = gr.Textbox(label="folder path", elem_id="kb-folder", scale=4)
                    self.rebuild_button = gr.Button("🔁 重建 Rebuild", elem_id="kb-rebuild", scale=1)
                gr.Markdown(
                    "A damaged index (the page says so when the knowledge base is picked) can also be "
                    "repaired without the files: it is republished from the chunks stored on disk."
                )
                self.repair_button = gr.Button("🩹 修复 Repair (no files needed)", elem_id="kb-repair")
            with gr.Accordion("危险操作 · danger zone", open=False):
                self.delete_ask = gr.Button(
                    "删除知识库 · Delete knowledge base…", variant="stop", elem_id="kb-delete"
                )
                with gr.Row(visible=False) as self.confirm_row:
                    gr.Markdown("This deletes the knowledge base and its index. Sure?")
                    self.delete_yes = gr.Button("Yes, delete", variant="stop", elem_id="kb-delete-confirm")
                    self.delete_no = gr.Button("Cancel", elem_id="kb-delete-cancel")

    # ------------------------------------------------------------------ views
    def overview(self, kb: str | None, check: bool = False) -> str:
        """One line about ``kb``; with ``check`` its index is loaded (or reused), so a corrupt one
        shows here, with the way out, as soon as the knowledge base is picked."""
        if not kb:
            return "<p class='kb-muted'>选择或新建一个知识库 · pick or create a knowledge base.</p>"
        try:
            s = self.kbs.summary(kb)
            if check:
                self.kbs.snapshot(kb)
        except StoreError as exc:
            return render_error(exc) + render_rebuild_hint(kb)
        except self._user_errors as exc:
            return render_error(exc)
        return (
            f"<p><b>{esc(s.name)}</b> · {s.documents} document(s) · {s.chunks} chunks · embedding "
            f"<code>{esc(s.embedding_model)}</code> (dim {s.dimension})</p>"
        )

    def view(self, kb: str | None) -> Update:
        """Overview, documents table and the document picker for ``kb`` (the knowledge base picked)."""
        empty = {self.docs: render_documents([]), self.doc_pick: gr.update(choices=[], value=[])}
        if not kb or not self.kbs.exists(kb):
            return {self.overview_html: self.overview(None), **empty}
        try:
            docs = self.kbs.documents(kb)
        except StoreError as exc:
            return {self.overview_html: render_error(exc) + render_rebuild_hint(kb), **empty}
        except self._user_errors as exc:
            return {self.overview_html: render_error(exc), **empty}
        return {
            self.overview_html: self.overview(kb, check=True),
            self.docs: render_documents(docs),
            self.doc_pick: gr.update(choices=[d.doc_id for d in docs], value=[]),
        }

    def relist(self, selected: str | None) -> Update:
        """This tab after the list may have changed: the dropdown re-read (``selected`` if it still
        exists, else the first knowledge base) and its view."""
        names = kb_names(self.kbs)
        kb = pick(selected, names, names[0] if names else None)
        return {self.select: gr.update(choices=names, value=kb), **self.view(kb)}

    def changed(self, selected: str | None, created: str | None = None) -> Update:
        """:meth:`relist`, and the declared event that tells the other tabs."""
        return {**self.relist(selected), self.shared.kb_list: announce("kbs", selected, created)}

    # ------------------------------------------------------------------ handlers
    def refresh(self, selected: str | None) -> Update:
        """The ↻ button: every tab re-reads the knowledge-base list."""
        return self.changed(selected)

    def on_kb_list(self, event: KbListChanged | None, selected: str | None) -> Any:
        """Another tab (or the page load) says the list may have changed: re-read it here."""
        if event is not None and event.origin == "kbs":
            return gr.skip()  # said by this tab, whose handler has updated it already
        return self.relist(selected)

    def create(self, name: str) -> Update:
        try:
            s = self.kbs.create((name or "").strip())
        except self._user_errors as exc:
            raise gr.Error(str(exc)) from exc
        gr.Info(f"created knowledge base {s.name}", duration=3)
        return {self.new_name: "", **self.changed(s.name, created=s.name)}

    def confirm_delete(self) -> Any:
        return gr.update(visible=True)

    def cancel_delete(self) -> Any:
        return gr.update(visible=False)

    def delete(self, kb: str | None) -> Update:
        if not kb:
            raise gr.Error("no knowledge base selected")
        try:
            self.kbs.delete(kb)
        except self._user_errors as exc:
            raise gr.Error(str(exc)) from exc
        gr.Info(f"deleted knowledge base {kb}", duration=3)
        return {self.confirm_row: gr.update(visible=False), **self.changed(None)}

    def delete_docs(self, kb: str | None, doc_ids: list[str] | None) -> Update:
        if not kb or not doc_ids:
            raise gr.Error("pick the document(s) to delete first")
        try:
            removed = self.kbs.remove(kb, list(doc_ids))
        except self._user_errors as exc:
            raise gr.Error(str(exc)) from exc
        msg = f"removed {len(removed)} document(s) from {kb}: " + ", ".join(removed)
        return {self.result: f"<p class='kb-ok'>{esc(msg)}</p>", **self.view(kb)}

    def upload(
        self,
        kb: str | None,
        files: list[str] | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's documented way to get a bar
    ) -> Update:
        """Stage the browser's uploads under safe names (size limit) and add them to ``kb``."""
        if not kb:
            raise gr.Error("create or pick a knowledge base first")
        if not files:
            raise gr.Error("choose one or more files first")
        progress(0.0, desc="receiving files")
        with tempfile.TemporaryDirectory(prefix="kbqa-upload-") as tmp:
            staged = stage_uploads([(Path(f).name, f) for f in files], Path(tmp), max_bytes=self.max_bytes)
            report = None
            if staged.files:
                try:
                    report = self.ingestor.add_named(kb, staged.files, progress=_bar(progress))
                except self._user_errors as exc:
                    return {self.result: render_error(exc), self.files: None, **self.changed(kb)}
        outcomes = file_outcomes(report, staged.problems)
        summary = report.summary() if report else f"{kb}: nothing indexed"
        bad = [o for o in outcomes if o.status == "skipped"]
        if bad:
            gr.Warning(f"{len(bad)} file(s) not indexed — see the list for reasons")
        return {self.result: render_outcomes(summary, outcomes), self.files: None, **self.changed(kb)}

    def rebuild(
        self,
        kb: str | None,
        folder: str,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> Update:
        """Index exactly the supported files of a folder on the server into ``kb``."""
        name = (kb or "").strip()
        if not name:
            raise gr.Error("create or pick a knowledge base first")
        path = Path(os.path.expanduser((folder or "").strip()))
        if not str(folder or "").strip() or not path.is_dir():
            raise gr.Error(f"not a folder on the server: {folder!r}")
        progress(0.0, desc="scanning folder")
        try:
            report = self.ingestor.rebuild(name, path, progress=_bar(progress))
        except self._user_errors as exc:
            raise gr.Error(str(exc)) from exc
        outcomes = file_outcomes(report)
        if report.skipped:
            gr.Warning(f"{len(report.skipped)} file(s) not indexed — see the list for reasons")
        return {self.result: render_outcomes(report.summary(), outcomes), **self.changed(name)}

    def repair(self, kb: str | None) -> Update:
        """Republish a damaged knowledge base from what is stored on disk (no source files needed)."""
        name = (kb or "").strip()
        if not name:
            raise gr.Error("pick a knowledge base first")
        try:
            report = self.ingestor.repair(name)
        except self._user_errors as exc:
            raise gr.Error(str(exc)) from exc
        outcomes = [FileOutcome(p.source, "skipped", p.reason) for p in report.lost]
        if report.lost:
            gr.Warning(f"{len(report.lost)} document(s) could not be recovered — add their files again")
        return {self.result: render_outcomes(report.summary(), outcomes), **self.changed(name)}

    # ------------------------------------------------------------------ events
    def wire(self, demo: gr.Blocks) -> None:
        """Attach the tab's events (inside ``demo``)."""
        kb_list = self.shared.kb_list
        view = [self.overview_html, self.docs, self.doc_pick]
        listed = [self.select, *view]
        changed = [*listed, kb_list]
        index_group: dict[str, Any] = {
            "concurrency_id": "index",
            "concurrency_limit": INDEX_CONCURRENCY,
            "show_progress_on": [self.result],
        }

        self.select.change(self.view, [self.select], view, concurrency_limit=None)
        self.refresh_button.click(self.refresh, [self.select], changed, concurrency_limit=None)
        kb_list.change(self.on_kb_list, [kb_list, self.select], listed, concurrency_limit=None)
        for create_trigger in (self.create_button.click, self.new_name.submit):
            create_trigger(self.create, [self.new_name], [self.new_name, *changed], concurrency_id="manage")
        self.delete_ask.click(self.confirm_delete, outputs=[self.confirm_row], concurrency_limit=None)
        self.delete_no.click(self.cancel_delete, outputs=[self.confirm_row], concurrency_limit=None)
        self.delete_yes.click(
            self.delete, [self.select], [self.confirm_row, *changed], concurrency_id="manage"
        )
        self.doc_delete_button.click(
            self.delete_docs, [self.select, self.doc_pick], [self.result, *view], concurrency_id="manage"
        )
        self.add_button.click(
            self.upload, [self.select, self.files], [self.result, self.files, *changed], **index_group
        )
        self.rebuild_button.click(
            self.rebuild, [self.select, self.folder], [self.result, *changed], **index_group
        )
        self.repair_button.click(self.repair, [self.select], [self.result, *changed], **index_group)
