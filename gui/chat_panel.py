"""The chat half of the window: saved chats, a streaming transcript, the input box, and chat settings.

The engine is never called on the GUI thread: a reply streams through ``gui.workers.run_stream`` on the
engine's single thread, each ``ChatEvent`` arrives back here queued, and tokens go into the
``TranscriptModel`` buffer, which repaints at most every ~60 ms. Stop is cooperative
(``Engine.stop()``; the stream ends within one token).

Chats are saved with ``core.chats`` after every exchange, when another chat is opened, a short while after
typing stops (the unsent draft is part of the chat), and on ``shutdown()``. A failed save says so through
the notifier and keeps everything in memory, so the next save can still succeed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QCoreApplication,
    QModelIndex,
    QPoint,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut, QTextOption
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from core.atomic import SaveError
from core.chats import Chat, ChatFileError, ChatStore
from core.engine import EngineCrashed
from core.errors import describe
from core.reply_stats import ReplyStats
from core.sampling import SamplingSettings
from core.settings import AppSettings
from gui.chat_bubbles import LONG_RUN, SHOWN_CHARS, BubbleDelegate
from gui.chat_list_model import ChatListModel, ChatListRole
from gui.chat_model import TranscriptModel, TranscriptRole, stats_text
from gui.chat_text import EnterSends, code_blocks
from gui.notify import notifier
from gui.plain import esc, plain_box
from gui.workers import Task, engine_pool, run_stream

if TYPE_CHECKING:
    from core.engine import ChatEvent, Engine

#: Why New chat / opening another chat does nothing while the open chat can't be saved.
KEPT_UNSAVED = ("This chat stays open: it could not be saved, and switching chats now would lose it. "
                "Fix the problem (free disk space, check the data folder's permissions) and try again.")

DRAFT_SAVE_MS = 1500
SHUTDOWN_WAIT_MS = 10_000


def _escape_stop(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def _unescape_stop(s: str) -> str:
    """``\\n`` and ``\\t`` typed in the stop-strings box mean a newline and a tab."""
    out: list[str] = []
    i = 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s) and s[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[s[i + 1]])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


class _Turn:
    """Book-keeping for the reply being streamed: when it started, first token, counts, outcome."""

    def __init__(self, task_engine: Engine) -> None:
        self.engine = task_engine
        self.task: Task | None = None
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.tokens = 0
        self.done_stats = ReplyStats()
        self.error: str | None = None
        self.stopping = False
        self.context_full = False

    def live_stats(self) -> ReplyStats:
        """Numbers measured here, while the engine's final ones are not in yet."""
        if self.first_token_at is None:
            return ReplyStats(tokens=self.tokens)
        elapsed = time.monotonic() - self.first_token_at
        tps = (self.tokens - 1) / elapsed if self.tokens > 1 and elapsed > 0 else 0.0
        return ReplyStats(self.tokens, tps, self.first_token_at - self.started)


class ChatPanel(QWidget):
    """Chat with the loaded model.

    ``get_engine`` returns the app's engine (or None when there is none); the panel only calls it to
    send. The main window tells the panel about loads with ``set_model_loaded``.

    Signals:
        chatSaved: a chat was written to disk (arg: chat id).
        streamingChanged: a reply started (True) or ended (False).
        engineLost: the engine process died during a reply (arg: why, in words); the model is gone.
    """

    chatSaved = Signal(str)
    streamingChanged = Signal(bool)
    engineLost = Signal(str)

    def __init__(self, get_engine: Callable[[], Engine | None], parent: QWidget | None = None, *,
                 store: ChatStore | None = None) -> None:
        super().__init__(parent)
        self._get_engine = get_engine
        self._store = store or ChatStore()
        self._loaded = False
        self._model_path: str | None = None
        self._turn: _Turn | None = None
        self._save_failing = False
        self._base_sampling = SamplingSettings()
        self._chat = Chat()

        self.transcript = TranscriptModel(self)
        self.chat_list = ChatListModel(self)

        self._draft_timer = QTimer(self)
        self._draft_timer.setSingleShot(True)
        self._draft_timer.setInterval(DRAFT_SAVE_MS)
        self._draft_timer.timeout.connect(self._save_draft)

        self._build_ui()
        self._connect_signals()
        self._restore()
        self._update_state()

    # ================================================================================================
    # UI
    # ================================================================================================

    def _build_ui(self) -> None:
        # --- left: saved chats
        self.new_button = QPushButton("New chat")
        self.new_button.setToolTip("Start a new conversation (the current one is kept)")
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search chats")
        self.search.setClearButtonEnabled(True)
        self.search.setAccessibleName("Search chats")
        self.chat_filter = QSortFilterProxyModel(self)
        self.chat_filter.setSourceModel(self.chat_list)
        self.chat_filter.setFilterRole(ChatListRole.SEARCH)
        self.chat_filter.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.chat_view = QListView()
        self.chat_view.setModel(self.chat_filter)
        self.chat_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.chat_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.chat_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.chat_view.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.chat_view.setUniformItemSizes(True)
        self.chat_view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.chat_view.setStyleSheet("QListView::item { padding: 5px 4px; }")
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        chats_label = QLabel("<b>Chats</b>")
        lv.addWidget(chats_label)
        lv.addWidget(self.new_button)
        lv.addWidget(self.search)
        lv.addWidget(self.chat_view, 1)

        # --- centre: transcript, input
        self.context_banner = QLabel()
        self.context_banner.setWordWrap(True)
        self.context_banner.setStyleSheet(
            "QLabel { background: rgba(224,160,0,0.22); border: 1px solid rgba(224,160,0,0.8);"
            " border-radius: 4px; padding: 6px; }")
        self.context_banner.hide()

        self.transcript_view = QListView()
        self.transcript_view.setModel(self.transcript)
        self.bubbles = BubbleDelegate(self.transcript_view)
        self.transcript_view.setItemDelegate(self.bubbles)
        self.transcript_view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.transcript_view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.transcript_view.setResizeMode(QListView.ResizeMode.Adjust)
        self.transcript_view.setWordWrap(True)
        self.transcript_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.transcript_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.transcript_view.setFrameShape(QFrame.Shape.StyledPanel)
        self.transcript_view.setAccessibleName("Transcript")

        self.empty_hint = QLabel()
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setStyleSheet("color: palette(placeholder-text); padding: 16px;")

        self.stats_label = QLabel()
        self.stats_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stats_label.setAccessibleName("Reply speed")
        # An error line can be long (a crash explains its cause and the fix): wrap it, never widen the column.
        self.stats_label.setWordWrap(True)
        self.stats_label.setTextFormat(Qt.TextFormat.PlainText)
        self.stats_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.input = QPlainTextEdit()
        self.input.setPlaceholderText("Type a message…  (Enter sends, Shift+Enter for a new line, Esc stops)")
        self._enter_sends = EnterSends(self.input, self.send)
        self.input.setTabChangesFocus(True)
        self.input.setMaximumHeight(90)
        self.input.setMinimumHeight(56)
        self.input.setAccessibleName("Message")
        self.send_button = QPushButton("Send")
        self.send_button.setToolTip("Send (Enter; Shift+Enter makes a new line)")
        self.send_button.setDefault(True)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the reply (Esc)")
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        input_row = QHBoxLayout()
        input_row.addWidget(self.input, 1)
        input_row.addLayout(buttons)

        # The system prompt and sampler sit in a side column that folds away, so the transcript keeps
        # its width when the window is shared with the planner.
        self.settings_toggle = QPushButton("System prompt && sampling")
        self.settings_toggle.setCheckable(True)
        self.settings_toggle.setToolTip("Show or hide the system prompt and the sampling settings")
        top_row = QHBoxLayout()
        top_row.addStretch(1)
        top_row.addWidget(self.settings_toggle)

        centre = QWidget()
        cv = QVBoxLayout(centre)
        cv.setContentsMargins(0, 0, 0, 0)
        cv.addLayout(top_row)
        cv.addWidget(self.context_banner)
        cv.addWidget(self.transcript_view, 1)
        cv.addWidget(self.empty_hint, 1)
        self.copy_code_button = QPushButton("Copy code")
        self.copy_code_button.setToolTip("Copy the code blocks of the selected reply (or of the last one)")
        self.copy_code_button.setVisible(False)
        stats_row = QHBoxLayout()
        stats_row.addWidget(self.stats_label, 1)
        stats_row.addWidget(self.copy_code_button)
        cv.addLayout(stats_row)
        cv.addLayout(input_row)

        # --- right: system prompt and sampling
        self.system_edit = QPlainTextEdit()
        self.system_edit.setPlaceholderText("e.g. You are a concise assistant.")
        self.system_edit.setMaximumHeight(90)
        self.system_edit.setTabChangesFocus(True)
        self.system_edit.setAccessibleName("System prompt")

        def dspin(lo: float, hi: float, step: float, decimals: int, tip: str) -> QDoubleSpinBox:
            w = QDoubleSpinBox()
            w.setRange(lo, hi)
            w.setSingleStep(step)
            w.setDecimals(decimals)
            w.setToolTip(tip)
            return w

        self.temperature = dspin(0.0, 5.0, 0.05, 2, "Randomness: 0 always picks the likeliest token")
        self.top_p = dspin(0.0, 1.0, 0.01, 2, "Nucleus sampling: keep the likeliest tokens up to this mass (1 = off)")
        self.top_k = QSpinBox()
        self.top_k.setRange(0, 1000)
        self.top_k.setSpecialValueText("off")
        self.top_k.setToolTip("Keep only the K likeliest tokens (0 = off)")
        self.min_p = dspin(0.0, 1.0, 0.01, 2, "Drop tokens less likely than this share of the top token (0 = off)")
        self.repeat_penalty = dspin(0.0, 3.0, 0.05, 2, "Penalise tokens seen recently (1 = off)")
        self.seed = QSpinBox()
        self.seed.setRange(-1, 2**31 - 1)
        self.seed.setSpecialValueText("random")
        self.seed.setToolTip("A fixed seed repeats the same reply for the same input (-1 = random)")
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 1_048_576)
        self.max_tokens.setToolTip("Longest reply, in tokens (Ollama's num_predict)")
        self.stop_edit = QPlainTextEdit()
        self.stop_edit.setPlaceholderText("one per line")
        self.stop_edit.setMaximumHeight(64)
        self.stop_edit.setTabChangesFocus(True)
        self.stop_edit.setToolTip("The reply ends when it produces one of these strings (one per line; type \\n for a newline)")
        self.reset_button = QPushButton("Reset to defaults")

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top P", self.top_p)
        form.addRow("Top K", self.top_k)
        form.addRow("Min P", self.min_p)
        form.addRow("Repeat penalty", self.repeat_penalty)
        form.addRow("Seed", self.seed)
        form.addRow("Max tokens", self.max_tokens)
        form.addRow("Stop strings", self.stop_edit)

        settings = QWidget()
        sv = QVBoxLayout(settings)
        sv.setContentsMargins(4, 0, 4, 0)
        sv.addWidget(QLabel("<b>System prompt</b>"))
        sv.addWidget(self.system_edit)
        sv.addSpacing(6)
        sv.addWidget(QLabel("<b>Sampling</b>"))
        sv.addLayout(form)
        sv.addWidget(self.reset_button, 0, Qt.AlignmentFlag.AlignRight)
        sv.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(settings)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.settings_area = scroll

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(centre)
        self.splitter.addWidget(scroll)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 0)
        self.splitter.setCollapsible(1, False)
        self.splitter.setSizes([160, 560, 240])
        self.settings_toggle.toggled.connect(self.settings_area.setVisible)
        self.settings_area.setVisible(False)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.addWidget(self.splitter)

        self._show_sampling(self._base_sampling)

        # Shortcuts belong to the panel (and its children), so they never fight the main window's.
        ctx = Qt.ShortcutContext.WidgetWithChildrenShortcut
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self, self.send, ctx)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.stop, ctx)
        copy = QShortcut(QKeySequence(QKeySequence.StandardKey.Copy), self.transcript_view, self._copy_selected)
        copy.setContext(Qt.ShortcutContext.WidgetShortcut)

    def _connect_signals(self) -> None:
        self.send_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(self.stop)
        self.new_button.clicked.connect(self.new_chat)
        self.reset_button.clicked.connect(lambda: self.set_sampling(SamplingSettings()))
        self.search.textChanged.connect(self.chat_filter.setFilterFixedString)
        self.copy_code_button.clicked.connect(self.copy_code)
        self.transcript_view.selectionModel().currentChanged.connect(self._update_copy_code)
        self.transcript.modelReset.connect(self._update_copy_code)
        self.transcript.rowsInserted.connect(self._update_copy_code)
        self.transcript.rowsRemoved.connect(self._update_copy_code)
        self.transcript.dataChanged.connect(self._update_copy_code)
        self.chat_view.clicked.connect(self._on_chat_clicked)
        self.chat_view.activated.connect(self._on_chat_clicked)
        self.chat_view.customContextMenuRequested.connect(self._chat_menu)
        self.transcript_view.customContextMenuRequested.connect(self._transcript_menu)
        self.transcript.flushed.connect(self._show_live_stats)
        self.transcript.rowsInserted.connect(self._scroll_to_end)
        self.transcript.modelReset.connect(self._update_state)
        self.transcript.rowsInserted.connect(self._update_state)
        self.transcript.rowsRemoved.connect(self._update_state)
        # The view does not re-measure a row on dataChanged by itself; ask the delegate to.
        self.transcript.dataChanged.connect(self._on_transcript_changed)
        self.input.textChanged.connect(self._on_input_changed)

    # ================================================================================================
    # Public API (agreed with the main window)
    # ================================================================================================

    @Slot(bool, object)
    def set_model_loaded(self, loaded: bool, model_path: str | None) -> None:
        """A model was loaded (``loaded``) or unloaded. Enables Send; the chat records which model it used."""
        self._loaded = loaded
        self._model_path = model_path if loaded else None
        if loaded and model_path and not self._chat.messages:
            self._chat.model_path = model_path
        self._update_state()

    def sampling(self) -> SamplingSettings:
        """The sampling settings and system prompt as the form shows them now."""
        stops = tuple(_unescape_stop(line) for line in self.stop_edit.toPlainText().splitlines() if line)
        seed = self.seed.value()
        return self._base_sampling.with_(
            temperature=round(self.temperature.value(), 4),
            top_p=round(self.top_p.value(), 4),
            top_k=self.top_k.value(),
            min_p=round(self.min_p.value(), 4),
            repeat_penalty=round(self.repeat_penalty.value(), 4),
            seed=None if seed < 0 else seed,
            max_tokens=self.max_tokens.value(),
            stop=stops,
            system=self.system_edit.toPlainText(),
        )

    def set_sampling(self, s: SamplingSettings) -> None:
        """Show ``s`` in the form (the system prompt too)."""
        self._base_sampling = s
        self._show_sampling(s)

    def shutdown(self) -> None:
        """Stop a running reply, wait for it to end, and save the chat with its unsent draft. Call once
        before the window closes."""
        self._draft_timer.stop()
        if self._turn is not None:
            self.stop()
            engine_pool().waitForDone(SHUTDOWN_WAIT_MS)
            # The stream's last tokens and its "finished" are queued to this thread; deliver them now
            # (not a processEvents loop: only events already posted are sent).
            QCoreApplication.sendPostedEvents()
            if self._turn is not None:  # the engine did not finish in time: keep what we have
                self._finish_turn()
        self._sync_chat()
        self._save()

    # --- more public helpers ------------------------------------------------------------------------

    @property
    def is_streaming(self) -> bool:
        return self._turn is not None

    @property
    def current_chat(self) -> Chat:
        return self._chat

    def messages(self) -> list[dict[str, str]]:
        """The current chat as OpenAI-style dicts (for the Modelfile export's MESSAGE lines)."""
        return [{"role": m.role, "content": m.content} for m in self._chat.messages]

    @Slot()
    def send(self) -> bool:
        """Send the input box's text. Returns False (and keeps the text) when it can't be sent."""
        if self._turn is not None:
            return False
        text = self.input.toPlainText()
        if not text.strip():
            return False
        engine = self._get_engine() if self._loaded else None
        if engine is None:
            notifier().warning("Load a model to chat. Your message is still in the box.")
            return False
        self._sync_chat()
        chat = self._chat
        chat.add("user", text)
        self.transcript.append_message("user", text)
        self.input.clear()  # the text is in the chat now, and saved with it below
        chat.draft = ""
        return self._reply(engine)

    def _reply(self, engine: Engine) -> bool:
        """Stream the model's answer to the chat as it stands (its last message is the user's)."""
        chat, sampling = self._chat, self.sampling()
        if self._model_path:
            chat.model_path = self._model_path
        history: list[dict[str, str]] = []
        if sampling.system.strip():
            history.append({"role": "system", "content": sampling.system})
        history += [{"role": m.role, "content": m.content} for m in chat.messages if m.role != "system"]
        # The system prompt travels as the first message; clear it in the sampling settings so that an
        # engine that also honours ``sampling.system`` cannot add it twice.
        engine_sampling = sampling.with_(system="")
        self._save()

        turn = _Turn(engine)
        self._turn = turn
        self.context_banner.hide()
        self.transcript.begin_stream()
        self._scroll_to_end()
        turn.task = run_stream(
            lambda: engine.chat(history, engine_sampling),
            on_item=self._on_event, on_done=self._on_stream_done, on_error=self._on_stream_error,
            on_finished=self._on_stream_finished, pool=engine_pool(), context="Chat",
        )
        self.streamingChanged.emit(True)
        self._update_state()
        return True

    @Slot()
    def stop(self) -> None:
        """Ask the engine to stop the reply; it ends within one token and keeps what was written."""
        turn = self._turn
        if turn is None or turn.stopping:
            return
        turn.stopping = True
        try:
            turn.engine.stop()
        except Exception as exc:  # noqa: BLE001 - reported in words, the stream still ends on its own
            notifier().error(exc, "Stopping the reply")
        self._update_state()

    @Slot()
    def new_chat(self) -> None:
        """Keep the current chat and start an empty one with the same system prompt and settings."""
        if self._turn is not None:
            return
        self._sync_chat()
        if not self._save():
            notifier().warning(KEPT_UNSAVED)
            return
        chat = Chat(model_path=self._model_path, system=self.system_edit.toPlainText(),
                    sampling=self.sampling().to_dict())
        self._open(chat, apply_settings=False)
        self.input.setFocus()

    def open_chat(self, chat_id: str) -> bool:
        """Open a saved chat (the current one is saved first). False when it can't be read."""
        if self._turn is not None:
            return False
        if chat_id == self._chat.id:
            return True
        try:
            chat = self._store.load(chat_id)
        except (ChatFileError, ValueError) as exc:
            notifier().error(str(exc), "Opening chat")
            self._reload_list()
            return False
        self._sync_chat()
        if not self._save():
            notifier().warning(KEPT_UNSAVED)
            self._select_open_chat()
            return False
        self._open(chat, apply_settings=True)
        return True

    def rename_chat(self, chat_id: str, title: str) -> None:
        """Give a saved chat a title."""
        if chat_id == self._chat.id:
            self._chat.title = " ".join(title.split())
            self._chat.touch()
            self._save(force=True)
            return
        try:
            self.chat_list.upsert(self._store.rename(chat_id, title))
        except (ChatFileError, SaveError, ValueError) as exc:
            notifier().error(describe(exc), "Renaming chat")

    def delete_chat(self, chat_id: str) -> None:
        """Delete a saved chat; deleting the open one opens an empty chat."""
        if self._turn is not None and chat_id == self._chat.id:
            return
        try:
            self._store.delete(chat_id)
        except (SaveError, ValueError) as exc:
            notifier().error(describe(exc), "Deleting chat")
            return
        self.chat_list.remove(chat_id)
        if chat_id == self._chat.id:
            self._open(Chat(model_path=self._model_path, system=self.system_edit.toPlainText(),
                            sampling=self.sampling().to_dict()), apply_settings=False)

    # ================================================================================================
    # Streaming
    # ================================================================================================

    @Slot(object)
    def _on_event(self, ev: ChatEvent) -> None:
        turn = self._turn
        if turn is None:
            return
        if ev.kind == "token":
            if turn.first_token_at is None:
                turn.first_token_at = time.monotonic()
            turn.tokens += 1
            self.transcript.push_token(ev.text)
        elif ev.kind == "context_full":
            turn.context_full = True
            detail = ev.text.strip() if ev.text else ""
            self.context_banner.setText(
                "<b>The context is full.</b> The model can't see more text, so this reply was cut short. "
                "Start a new chat, or load the model with a larger context." + (f"<br>{esc(detail)}" if detail else ""))
            self.context_banner.show()
        elif ev.kind == "done":
            turn.done_stats = ReplyStats(ev.tokens or 0, float(ev.tokens_per_second or 0.0),
                                         float(ev.time_to_first_token or 0.0), ev.finish_reason or "")

    @Slot(object)
    def _on_stream_done(self, _result: object) -> None:
        """The generator ended normally (the "finished" slot does the work)."""

    @Slot(object)
    def _on_stream_error(self, exc: BaseException) -> None:
        if self._turn is not None:
            self._turn.error = describe(exc)
        notifier().error(exc, "Chat")
        if isinstance(exc, EngineCrashed):
            self.engineLost.emit(describe(exc))

    @Slot()
    def _on_stream_finished(self) -> None:
        if self._turn is not None:
            self._finish_turn()

    def _finish_turn(self) -> None:
        turn = self._turn
        assert turn is not None
        self._turn = None
        final = turn.live_stats().merged(turn.done_stats)
        final = replace(final, stopped=turn.stopping or final.stopped, error=turn.error or final.error,
                        model=self._model_path or final.model,
                        finish_reason=final.finish_reason or ("context_full" if turn.context_full else ""))
        stats = final.to_dict()
        msg = self.transcript.end_stream(stats)
        if msg is not None and msg.content:
            self._chat.add("assistant", msg.content, msg.stats)
        elif msg is not None:
            self.transcript.remove_last()  # an error before the first token: no empty bubble
        self._show_final_stats(stats)
        self._save()
        self.streamingChanged.emit(False)
        self._update_state()

    @Slot()
    def _show_live_stats(self) -> None:
        if self._turn is not None:
            line = stats_text(self._turn.live_stats())
            self.stats_label.setText(f"Generating…  {line}" if line else "Generating…")

    def _show_final_stats(self, stats: dict[str, Any] | ReplyStats) -> None:
        line = stats_text(stats)
        self.stats_label.setText(f"Last reply: {line}" if line else "")

    # ================================================================================================
    # Chats on disk
    # ================================================================================================

    def _restore(self) -> None:
        """Open the chat that was open last time (or the newest), and list the others."""
        self._reload_list()
        last_id: str | None = None
        try:
            last_id = AppSettings.load().last_chat_id
        except Exception as exc:  # noqa: BLE001 - settings are optional here; say why and go on
            notifier().warning(f"Could not read settings: {describe(exc)}")
        chat = self._store.most_recent([last_id])
        if chat is None:
            self._open(Chat(), apply_settings=False)
        else:
            self._open(chat, apply_settings=True)

    def _reload_list(self) -> None:
        problems = self.chat_list.reload(self._store)
        for p in problems:
            notifier().warning(f"Skipped a chat that could not be read ({p}).")

    def _open(self, chat: Chat, *, apply_settings: bool) -> None:
        self._draft_timer.stop()
        self._chat = chat
        self.transcript.set_messages(chat.messages)
        self.context_banner.hide()
        self.stats_label.setText("")
        last = next((m for m in reversed(chat.messages) if m.role == "assistant" and m.stats), None)
        if last is not None:
            self._show_final_stats(last.stats)
        if apply_settings:
            current = self.sampling()
            try:
                base = SamplingSettings.from_dict(chat.sampling) if chat.sampling else current
                self.set_sampling(base.with_(system=chat.system))
            except Exception as exc:  # noqa: BLE001 - a hand-edited file must not stop the chat from opening
                notifier().warning(f"This chat's saved sampling settings could not be used ({describe(exc)}); "
                                   "the current ones are kept.")
                self.set_sampling(current.with_(system=chat.system))
        self.input.blockSignals(True)
        self.input.setPlainText(chat.draft)
        self.input.blockSignals(False)
        self._select_open_chat()
        self._scroll_to_end()
        self._update_state()

    def _select_open_chat(self) -> None:
        """Highlight the open chat in the list (nothing when it isn't saved yet)."""
        row = self.chat_list.row_of(self._chat.id)
        if row >= 0:
            self.chat_view.setCurrentIndex(self.chat_filter.mapFromSource(self.chat_list.index(row, 0)))
        else:
            self.chat_view.clearSelection()
            self.chat_view.setCurrentIndex(QModelIndex())

    def _sync_chat(self) -> None:
        """Copy what the widgets hold (system prompt, sampling, unsent draft) into the chat."""
        s = self.sampling()
        self._chat.system = s.system
        d = s.to_dict()
        d.pop("system", None)
        self._chat.sampling = d
        self._chat.draft = self.input.toPlainText()

    def _save(self, *, force: bool = False) -> bool:
        """Write the chat if it holds anything. A failure is reported once; memory keeps everything."""
        chat = self._chat
        if not force and not chat.messages and not chat.draft.strip():
            return True
        try:
            self._store.save(chat)
        except SaveError as exc:
            if not self._save_failing:
                notifier().error(exc.strerror or describe(exc), "Saving chat")
            self._save_failing = True
            return False
        except ValueError as exc:  # an invalid id: a programming error, still said in words
            notifier().error(str(exc), "Saving chat")
            return False
        if self._save_failing:
            notifier().info("Chat saved again.")
        self._save_failing = False
        row = self.chat_list.upsert(chat)
        self.chat_view.setCurrentIndex(self.chat_filter.mapFromSource(self.chat_list.index(row, 0)))
        self._remember_last(chat.id)
        self.chatSaved.emit(chat.id)
        return True

    def _remember_last(self, chat_id: str) -> None:
        try:
            settings = AppSettings.load()
            if settings.last_chat_id != chat_id:
                settings.last_chat_id = chat_id
                settings.save()
        except SaveError as exc:
            notifier().warning(f"Could not remember the open chat: {exc.strerror or describe(exc)}")

    @Slot()
    def _on_input_changed(self) -> None:
        self._draft_timer.start()

    @Slot()
    def _save_draft(self) -> None:
        draft = self.input.toPlainText()
        if draft == self._chat.draft:
            return
        self._chat.draft = draft
        if self._chat.messages or draft.strip() or self._store.exists(self._chat.id):
            self._save(force=True)

    # ================================================================================================
    # View helpers
    # ================================================================================================

    @Slot(QModelIndex)
    def _on_chat_clicked(self, index: QModelIndex) -> None:
        chat_id = index.data(ChatListRole.ID)
        if chat_id:
            self.open_chat(str(chat_id))

    @Slot(QPoint)
    def _chat_menu(self, pos: QPoint) -> None:
        index = self.chat_view.indexAt(pos)
        chat_id = index.data(ChatListRole.ID) if index.isValid() else None
        if not chat_id:
            return
        menu = QMenu(self)
        rename = menu.addAction("Rename…")
        delete = menu.addAction("Delete…")
        delete.setEnabled(not (self._turn is not None and chat_id == self._chat.id))
        chosen = menu.exec(self.chat_view.viewport().mapToGlobal(pos))
        if chosen is rename:
            title, ok = QInputDialog.getText(self, "Rename chat", "Title:", text=str(index.data()))
            if ok and title.strip():
                self.rename_chat(str(chat_id), title)
        elif chosen is delete:
            box = plain_box(QMessageBox(QMessageBox.Icon.Question, "Delete chat",  # a title is not markup
                                        f"Delete “{index.data()}”? This can't be undone.",
                                        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self))
            if box.exec() == QMessageBox.StandardButton.Yes:
                self.delete_chat(str(chat_id))

    @Slot(QPoint)
    def _transcript_menu(self, pos: QPoint) -> None:
        index = self.transcript_view.indexAt(pos)
        if not index.isValid():
            return
        row, role = index.row(), str(index.data(TranscriptRole.ROLE) or "")
        text = str(index.data(TranscriptRole.CONTENT) or "")
        idle = self._turn is None
        menu = QMenu(self)
        copy = menu.addAction("Copy message")
        blocks = code_blocks(text)
        copies = {menu.addAction(f"Copy code block {i}" if len(blocks) > 1 else "Copy code"): b
                  for i, b in enumerate(blocks, 1)}
        copy_all = menu.addAction("Copy whole chat")
        whole = menu.addAction("Show whole message") if len(text) > SHOWN_CHARS else None
        menu.addSeparator()
        regen = menu.addAction("Regenerate reply")
        regen.setEnabled(idle and role == "assistant" and row == self.transcript.rowCount() - 1)
        edit = menu.addAction("Edit and resend")
        edit.setEnabled(idle and role == "user")
        delete = menu.addAction("Delete message")
        delete.setEnabled(idle)
        chosen = menu.exec(self.transcript_view.viewport().mapToGlobal(pos))
        if whole is not None and chosen is whole:
            self.show_whole_message(text)
        elif chosen is copy:
            QGuiApplication.clipboard().setText(text)
        elif chosen in copies:
            QGuiApplication.clipboard().setText(copies[chosen])
        elif chosen is copy_all:
            QGuiApplication.clipboard().setText(self._chat_as_text())
        elif chosen is regen:
            self.regenerate()
        elif chosen is edit:
            self.edit_message(row)
        elif chosen is delete:
            self.delete_message(row)

    # --- message actions ----------------------------------------------------------------------------

    def _code_source(self) -> str:
        """The text whose code blocks "Copy code" copies: the selected message, else the last reply."""
        index = self.transcript_view.currentIndex()
        if index.isValid():
            return str(index.data(TranscriptRole.CONTENT) or "")
        last = next((m for m in reversed(self.transcript.messages()) if m.role == "assistant"), None)
        return last.content if last is not None else ""

    def _update_copy_code(self, *_args: object) -> None:
        self.copy_code_button.setVisible(bool(code_blocks(self._code_source())))

    def copy_code(self) -> str:
        """Put the code blocks of the selected (or last) reply on the clipboard; returns what was copied."""
        text = "\n\n".join(code_blocks(self._code_source()))
        if text:
            QGuiApplication.clipboard().setText(text)
            notifier().info("Code copied.")
        return text

    def regenerate(self) -> bool:
        """Ask again for the last reply: it is replaced by a new one."""
        msgs = self._chat.messages
        engine = self._get_engine() if self._loaded else None
        if self._turn is not None or not msgs or msgs[-1].role != "assistant":
            return False
        if engine is None:
            notifier().warning("Load a model to regenerate the reply.")
            return False
        del msgs[-1]
        self.transcript.set_messages(msgs)
        return self._reply(engine)

    def edit_message(self, row: int) -> bool:
        """Take a message of yours back into the box to change and resend it: it and everything after
        it leave the chat (they are what the edit replaces)."""
        msgs = self._chat.messages
        if self._turn is not None or not 0 <= row < len(msgs) or msgs[row].role != "user":
            return False
        self.input.setPlainText(msgs[row].content)
        del msgs[row:]
        self._chat.touch()
        self.transcript.set_messages(msgs)
        self._save(force=True)
        self.input.setFocus()
        return True

    def delete_message(self, row: int) -> bool:
        """Remove one message from the chat."""
        msgs = self._chat.messages
        if self._turn is not None or not 0 <= row < len(msgs):
            return False
        del msgs[row]
        self._chat.touch()
        self.transcript.set_messages(msgs)
        self._save(force=True)
        return True

    def show_whole_message(self, text: str) -> QDialog:
        """A message too long for its bubble (shortened there), in a read-only window of its own.

        QPlainTextEdit lays out one block at a time, and a long run without spaces wraps anywhere: even a
        1 MB message opens in a fraction of a second (a bubble's layout would take minutes).
        """
        dlg = QDialog(self)
        dlg.setWindowTitle(f"Whole message ({len(text):,} characters)")
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        view = QPlainTextEdit(dlg)
        view.setReadOnly(True)
        view.setWordWrapMode(QTextOption.WrapMode.WrapAnywhere if LONG_RUN.search(text) else
                             QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        view.setPlainText(text)
        lay = QVBoxLayout(dlg)
        lay.addWidget(view)
        dlg.resize(720, 540)
        dlg.open()
        self.whole_message_dialog = dlg  # tests look at it
        return dlg

    def _chat_as_text(self) -> str:
        names = {"user": "You", "assistant": "Assistant", "system": "System"}
        return "\n\n".join(f"{names.get(m.role, m.role)}: {m.content}" for m in self.transcript.messages())

    @Slot()
    def _copy_selected(self) -> None:
        index = self.transcript_view.currentIndex()
        if index.isValid():
            QGuiApplication.clipboard().setText(str(index.data(TranscriptRole.CONTENT) or ""))

    @Slot(QModelIndex, QModelIndex)
    def _on_transcript_changed(self, top: QModelIndex, _bottom: QModelIndex, _roles: Any = None) -> None:
        self.bubbles.sizeHintChanged.emit(top)
        if top.row() == self.transcript.rowCount() - 1:
            self._scroll_to_end()

    @Slot()
    def _scroll_to_end(self) -> None:
        bar = self.transcript_view.verticalScrollBar()
        # Follow the reply only when the reader is already at the bottom; don't yank them back up.
        if bar.value() >= bar.maximum() - 40 or self._turn is None:
            QTimer.singleShot(0, self.transcript_view.scrollToBottom)

    def _show_sampling(self, s: SamplingSettings) -> None:
        self.temperature.setValue(s.temperature)
        self.top_p.setValue(s.top_p)
        self.top_k.setValue(s.top_k)
        self.min_p.setValue(s.min_p)
        self.repeat_penalty.setValue(s.repeat_penalty)
        self.seed.setValue(-1 if s.seed is None else s.seed)
        self.max_tokens.setValue(s.max_tokens)
        self.stop_edit.setPlainText("\n".join(_escape_stop(x) for x in s.stop))
        self.system_edit.setPlainText(s.system)

    @Slot()
    def _update_state(self) -> None:
        streaming = self._turn is not None
        self.send_button.setEnabled(self._loaded and not streaming)
        self.stop_button.setEnabled(streaming and not (self._turn is not None and self._turn.stopping))
        self.new_button.setEnabled(not streaming)
        self.chat_view.setEnabled(not streaming)
        empty = self.transcript.rowCount() == 0
        self.transcript_view.setVisible(not empty)
        self.empty_hint.setVisible(empty)
        if self._loaded:
            name = (self._model_path or "").replace("\\", "/").rsplit("/", 1)[-1]
            self.empty_hint.setText(f"<b>{esc(name or 'The model')}</b> is loaded.<br>Type a message below and "
                                    "press Enter.")
            self.input.setPlaceholderText("Type a message…  (Enter sends, Shift+Enter for a new line, Esc stops)")
        else:
            self.empty_hint.setText("Load a model to chat.<br>Saved chats stay in the list on the left.")
            self.input.setPlaceholderText("Load a model to chat. You can type already…")
        if streaming and self._turn is not None and self._turn.stopping:
            self.stats_label.setText("Stopping…")
