"""One session's state, in one place, with no Qt: the model and its settings, the hardware, the plan,
the load, pending imports and the chat's settings.

The window renders a ``Session`` and sends it intents (``select_model``, ``set_settings``,
``apply_suggestion``, ``set_hardware`` …); the session is the single writer of settings. Everything that
shows or exports a plan reads it from here, so the meter, the "Why" text, the chart and the Modelfile
export can never disagree about which plan they mean:

- ``plan``: the estimate for the selected model, its settings and the chosen hardware;
- ``shown_plan()``: what the meter and the reasons show: the plan that really loaded when the meter
  shows a measurement (``meter_source() is MeterSource.MEASURED``), else ``plan``;
- ``export_plan()``: the *selected* model's plan for this machine's real hardware (never the loaded
  model's when another one is selected, never a what-if card's).

Settings are kept per model (keyed by the library key: a path, or ``ollama:NAME``) and survive restarts
through ``AppSettings.model_settings``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from core.devices import DevicePlan, is_multi, multi_plan
from core.errors import describe
from core.export import ExportSpec, spec_for_plan
from core.fit import Plan, Suggestion, make_plan
from core.gguf_info import ModelInfo
from core.hardware import Hardware, what_if
from core.loadsettings import LoadSettings
from core.modelfile import ModelfileSpec
from core.sampling import SamplingSettings
from core.settings import AppSettings
from core.units import MiB

if TYPE_CHECKING:
    from core.engine import LoadResult
    from core.ollama import OllamaModel
    from core.rpc import WorkerInfo

THIS_MACHINE = "this machine"
#: How many models' settings are remembered (the most recently used ones).
MAX_REMEMBERED = 200
_INT32_MAX = 2**31 - 1  # what a saved count may be (Qt's spin boxes and llama.cpp's params are 32-bit)


class Change(StrEnum):
    """What a listener is told changed."""

    MODEL = "model"
    SETTINGS = "settings"  # the load settings (the form must show them)
    HARDWARE = "hardware"
    PLAN = "plan"
    LOAD = "load"
    SAMPLING = "sampling"


class MeterSource(StrEnum):
    ESTIMATE = "estimate"
    MEASURED = "measured"


@dataclass(frozen=True)
class PlanInputs:
    """What a plan was made from; equal inputs give an equal plan."""

    model_key: str
    model_path: str
    settings: LoadSettings
    hardware_choice: str
    whatif_ram: int
    headroom: int
    cards: int = 1
    workers: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadRequest:
    """What to load: ``plan`` on this machine, or, over several devices (``workers``), a plan the engine
    worker makes again at load time (a worker may have gone since planning)."""

    plan: Plan
    inputs: PlanInputs
    machine: Hardware
    workers: tuple[str, ...] = ()  # real workers only: what-if ones are for planning
    multi: bool = False

    def devices_plan(self) -> tuple[Plan, DevicePlan]:
        """The plan over every device, asking the workers now (network: call it off the GUI thread)."""
        s = self.inputs.settings
        return multi_plan(self.plan.model, s, self.machine, self.inputs.headroom, self.workers)


@dataclass(frozen=True)
class Loaded:
    """The model in the engine: the plan that really loaded (after fallbacks), what it was asked with,
    and the engine's measured result."""

    plan: Plan
    inputs: PlanInputs
    result: LoadResult


def default_settings(model: ModelInfo, base: LoadSettings | None = None) -> LoadSettings:
    """A model's settings before the user set any: ``base`` (or LayerFit's defaults) with the context
    no longer than the model was trained for."""
    s = base or LoadSettings()
    if model.n_ctx_train > 0 and s.n_ctx > model.n_ctx_train and base is None:
        s = s.with_(n_ctx=model.n_ctx_train)
    return s


def usable_settings(d: dict[str, Any]) -> LoadSettings:
    """Saved settings, checked: ValueError (in words) for values llama.cpp or the form can't take."""
    s = LoadSettings.from_dict(d)
    s.validate()
    for name in ("n_ctx", "n_gpu_layers", "n_batch", "n_ubatch", "n_threads"):
        if (getattr(s, name) or 0) > _INT32_MAX:
            raise ValueError(f"{name} {getattr(s, name):,} is too large")
    return s


class Session:
    """The state of one LayerFit session. Not thread-safe: call it from one thread (the GUI's)."""

    def __init__(self, app: AppSettings | None = None, machine: Hardware | None = None) -> None:
        self.app = app if app is not None else AppSettings()
        self.machine = machine if machine is not None else Hardware()
        self.model: ModelInfo | None = None
        self.model_key: str | None = None
        self.ollama: OllamaModel | None = None
        self.settings = LoadSettings()
        self.hardware_choice = THIS_MACHINE
        self.whatif_ram = 0  # bytes of RAM on the what-if machine; 0 = this machine's
        self.cards = 1  # how many of the what-if card
        self.workers: tuple[str, ...] = ()  # RPC workers, as typed (host:port, or a what-if size)
        self.worker_infos: dict[str, WorkerInfo] = {}  # the workers' last answers, by endpoint as typed
        self.worker_problems: dict[str, str] = {}  # why a worker can't be used
        self.device_plan: DevicePlan | None = None  # the split, when the plan spans several devices
        self.headroom = 768 * MiB
        self.plan: Plan | None = None
        self.plan_inputs: PlanInputs | None = None
        self.plan_error: str | None = None
        self.loaded: Loaded | None = None
        self.pending_import: ModelfileSpec | None = None
        self.sampling = SamplingSettings()
        self._remembered: dict[str, dict[str, Any]] = {}
        self._listeners: list[Callable[[Change], None]] = []
        self.restore_problems: list[str] = []
        self._restore()

    # ---- listeners --------------------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[Change], None]) -> None:
        """Call ``listener(change)`` after each change."""
        self._listeners.append(listener)

    def _tell(self, *changes: Change) -> None:
        for c in changes:
            for fn in list(self._listeners):
                fn(c)

    # ---- restore / save -----------------------------------------------------------------------------------
    def _restore(self) -> None:
        a = self.app
        self._attempt("memory headroom", lambda: self.set_headroom(int(a.headroom_mib) * MiB, replan=False))
        self._attempt("hardware", lambda: self._set_choice(a.hardware_choice, int(a.whatif_ram_mib) * MiB,
                                                           max(1, min(8, int(a.what_if_cards)))))
        self.workers = tuple(str(x) for x in a.workers if str(x).strip())
        self._attempt("sampling", lambda: setattr(self, "sampling", SamplingSettings.from_dict(a.sampling)))
        for key, d in a.model_settings.items():
            if isinstance(d, dict):
                self._remembered[str(key)] = d
        if a.load_settings and (not a.last_model or a.last_model not in self._remembered):
            # settings saved before per-model memory: the last model's
            self._attempt("load settings", lambda: usable_settings(a.load_settings))
            if a.last_model and not self.restore_problems:
                self._remembered[a.last_model] = a.load_settings

    def _attempt(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - a saved value must never stop the session from starting
            self.restore_problems.append(f"{what} ({describe(exc)})")

    def save_into(self, app: AppSettings | None = None) -> AppSettings:
        """Write what the session remembers into ``app`` (default: the one it was made with)."""
        a = app if app is not None else self.app
        self._remember_current()
        a.model_settings = dict(list(self._remembered.items())[-MAX_REMEMBERED:])
        if self.model_key is not None:
            a.last_model = self.model_key
            a.load_settings = self.settings.to_dict()
        a.headroom_mib = int(round(self.headroom / MiB))
        a.hardware_choice = self.hardware_choice
        a.whatif_ram_mib = int(round(self.whatif_ram / MiB))
        a.what_if_cards = self.cards
        a.workers = list(self.workers)
        a.sampling = self.sampling.to_dict()
        return a

    def _remember_current(self) -> None:
        if self.model_key is not None:
            self._remembered.pop(self.model_key, None)  # most recent last
            self._remembered[self.model_key] = self.settings.to_dict()

    def remembered_settings(self, key: str) -> LoadSettings | None:
        """The settings last used with the model ``key``, or None."""
        d = self.settings.to_dict() if key == self.model_key else self._remembered.get(key)
        if d is None:
            return None
        try:
            s = usable_settings(d)
        except (TypeError, ValueError, OverflowError) as exc:
            self._remembered.pop(key, None)
            self.restore_problems.append(f"load settings for {key} ({describe(exc)}); the defaults are used")
            return None
        return s

    # ---- model --------------------------------------------------------------------------------------------
    def select_model(self, info: ModelInfo, key: str | None = None, ollama: OllamaModel | None = None) -> None:
        """The user picked ``info`` (``key``: its library key, default its path). Its own settings come
        back: the ones last used with it, else an Ollama model's params, else the defaults. A pending
        Modelfile import for it is applied on top."""
        self._remember_current()
        key = key or info.path
        om = ollama if ollama is not None and ollama.path == info.path else None
        remembered = self.remembered_settings(key)
        self.model, self.model_key, self.ollama = info, key, om
        if remembered is not None:
            self.settings = remembered
        else:
            self.settings = default_settings(info, om.load_settings() if om is not None else None)
        if om is not None:
            self.sampling = om.sampling()
        applied = self._apply_pending_import()
        self.replan()
        self._tell(Change.MODEL, Change.SETTINGS, *((Change.SAMPLING,) if om is not None or applied else ()),
                   Change.PLAN)

    def clear_model(self, problem: str) -> None:
        """The selected file can't be used: nothing is planned."""
        self._remember_current()
        self.model = self.model_key = self.ollama = None
        self.plan, self.plan_inputs, self.plan_error = None, None, problem
        self._tell(Change.MODEL, Change.PLAN)

    # ---- settings (the single writer) -------------------------------------------------------------------------
    def set_settings(self, settings: LoadSettings) -> None:
        """The user changed the form to ``settings``."""
        if settings == self.settings:
            return
        self.settings = settings
        self.replan()
        self._tell(Change.PLAN)

    def update(self, **changes: Any) -> None:
        """Change some fields of the load settings (and show them)."""
        self.settings = self.settings.with_(**changes)
        self.replan()
        self._tell(Change.SETTINGS, Change.PLAN)

    def apply_suggestion(self, suggestion: Suggestion) -> LoadSettings:
        """Apply exactly what ``suggestion`` names: Auto stays Auto, nothing else moves."""
        self.settings = suggestion.apply_to(self.settings)
        self.replan()
        self._tell(Change.SETTINGS, Change.PLAN)
        return self.settings

    # ---- hardware ------------------------------------------------------------------------------------------------
    def set_machine(self, hw: Hardware) -> None:
        """This machine's probed hardware (what a load runs on)."""
        self.machine = hw
        self.replan()
        self._tell(Change.HARDWARE, Change.PLAN)

    def _set_choice(self, choice: str, whatif_ram: int, cards: int = 1) -> None:
        if choice != THIS_MACHINE:
            what_if(choice, base=self.machine)  # raises for a choice that is neither a preset nor a size
        if whatif_ram < 0:
            raise ValueError("the what-if RAM must be 0 (this machine's) or more")
        if not 1 <= cards <= 64:
            raise ValueError(f"the number of what-if cards must be 1 to 64, not {cards}")
        self.hardware_choice, self.whatif_ram, self.cards = choice, whatif_ram, cards

    def set_hardware(self, choice: str, whatif_ram: int | None = None, cards: int | None = None) -> None:
        """Plan for ``choice`` ("this machine", a preset key or a size like "16GiB"); ``whatif_ram`` is
        the what-if machine's RAM in bytes (0 = this machine's), ``cards`` how many of the what-if card
        (None = unchanged)."""
        self._set_choice(choice, self.whatif_ram if whatif_ram is None else whatif_ram,
                         self.cards if cards is None else cards)
        self.replan()
        self._tell(Change.HARDWARE, Change.PLAN)

    def set_workers(self, endpoints: Iterable[str]) -> None:
        """The RPC workers to plan with (their answers come later: ``set_worker_answers``)."""
        self.workers = tuple(e.strip() for e in endpoints if e.strip())
        self.replan()
        self._tell(Change.HARDWARE, Change.PLAN)

    def set_worker_answers(self, infos: dict[str, WorkerInfo], problems: dict[str, str]) -> None:
        """What the workers said when asked (off the GUI thread): their devices, or why not."""
        self.worker_infos, self.worker_problems = dict(infos), dict(problems)
        self.replan()
        self._tell(Change.PLAN)

    def set_headroom(self, nbytes: int, *, replan: bool = True) -> None:
        if nbytes < 0:
            raise ValueError("the memory kept free can't be negative")
        self.headroom = nbytes
        if replan:
            self.replan()
            self._tell(Change.PLAN)

    def hardware(self) -> Hardware:
        """The hardware to plan for: this machine, or a what-if card (with the what-if RAM if set)."""
        if self.hardware_choice == THIS_MACHINE:
            return self.machine
        base = self.machine.with_ram(self.whatif_ram) if self.whatif_ram > 0 else self.machine
        hw = what_if(self.hardware_choice, base=base)
        if self.cards > 1 and hw.gpus:  # several of the what-if card
            hw = replace(hw, gpus=tuple(replace(hw.gpus[0], index=i) for i in range(self.cards)))
        return hw

    def is_what_if(self) -> bool:
        return self.hardware_choice != THIS_MACHINE

    # ---- plan -----------------------------------------------------------------------------------------------------
    def inputs(self) -> PlanInputs | None:
        if self.model is None or self.model_key is None:
            return None
        return PlanInputs(self.model_key, self.model.path, self.settings, self.hardware_choice, self.whatif_ram,
                          self.headroom, self.cards if self.is_what_if() else 1, self.workers)

    def replan(self) -> Plan | None:
        """The estimate for the current inputs (milliseconds; no suggestions: see ``advise``)."""
        inputs = self.inputs()
        if inputs is None or self.model is None:
            self.plan = self.plan_inputs = None
            return None
        try:
            hw = self.hardware()
            self.device_plan = None
            if is_multi(hw, self.workers):
                self.plan, self.device_plan = self._plan_devices(hw, inputs)
            else:
                self.plan = make_plan(self.model, inputs.settings, hw, inputs.headroom, suggest=False)
        except Exception as exc:  # noqa: BLE001 - the plan error is shown to the user in words
            self.plan, self.plan_inputs, self.plan_error = None, None, describe(exc)
            return None
        self.plan_inputs, self.plan_error = inputs, None
        return self.plan

    def _plan_devices(self, hw: Hardware, inputs: PlanInputs) -> tuple[Plan, DevicePlan]:
        """The plan over several devices with the workers' last answers; one not yet answered, or
        unusable, is a reason in words."""
        assert self.model is not None
        infos = [self.worker_infos[w] for w in self.workers if w in self.worker_infos]
        problems = tuple(self.worker_problems.get(w, f"worker {w}: checking whether it answers…")
                         for w in self.workers if w not in self.worker_infos)
        plan, dp = multi_plan(self.model, inputs.settings, hw, inputs.headroom, infos=infos)
        return replace(plan, reasons=problems + plan.reasons), replace(dp, problems=problems)

    def refresh(self) -> None:
        """Plan again with the same inputs (something the planner reads has changed, like a check by
        llama.cpp remembered for this model)."""
        self.replan()
        self._tell(Change.PLAN)

    def advise(self) -> Plan | None:
        """The plan the meter and the "Why" text show, with reasons and suggestions.

        When the meter shows a measurement, that is the plan which really loaded (its reasons are about
        the hardware it loaded on); otherwise the estimate, now with suggestions (a few more plans).
        """
        if self.meter_source() is MeterSource.MEASURED and self.loaded is not None:
            return self.loaded.plan
        inputs = self.plan_inputs
        if inputs is None or self.model is None or inputs != self.inputs():
            return None
        if self.device_plan is not None:  # the per-device plan already carries its reasons
            return self.plan
        self.plan = make_plan(self.model, inputs.settings, self.hardware(), inputs.headroom)
        return self.plan

    def meter_source(self) -> MeterSource:
        """Measured when the loaded model is the one selected, with the same settings and hardware choice."""
        if self.loaded is not None and self.loaded.inputs == self.inputs():
            return MeterSource.MEASURED
        return MeterSource.ESTIMATE

    def shown_plan(self) -> Plan | None:
        """The one plan the meter, the reasons and the export refer to right now."""
        if self.meter_source() is MeterSource.MEASURED and self.loaded is not None:
            return self.loaded.plan
        return self.plan

    # ---- load -----------------------------------------------------------------------------------------------------
    def load_plan(self) -> Plan | None:
        """What to load: the selected model's plan for this machine (a what-if card only plans)."""
        req = self.load_request()
        return req.plan if req is not None else None

    def load_request(self) -> LoadRequest | None:
        """The load to ask the engine for, on this machine's real hardware and real workers."""
        inputs = self.inputs()
        if self.model is None or self.plan is None or inputs is None:
            return None
        from core.rpc import what_if_worker

        real = tuple(w for w in self.workers if what_if_worker(w) is None)
        if is_multi(self.machine, real):
            return LoadRequest(self.plan, inputs, self.machine, real, multi=True)
        plan = self.plan
        if self.is_what_if() or self.device_plan is not None:
            plan = make_plan(self.model, self.settings, self.machine, self.headroom)
        return LoadRequest(plan, inputs, self.machine)

    def on_loaded(self, asked: Plan, inputs: PlanInputs, result: LoadResult) -> None:
        """The engine loaded ``asked`` (or, after fallbacks, ``result.plan``)."""
        self.loaded = Loaded(result.plan or asked, inputs, result)
        self._tell(Change.LOAD, Change.PLAN)

    def on_unloaded(self) -> None:
        if self.loaded is None:
            return
        self.loaded = None
        self._tell(Change.LOAD, Change.PLAN)

    # ---- export ---------------------------------------------------------------------------------------------------
    def export_plan(self) -> Plan | None:
        """The selected model's plan for this machine's real hardware.

        The plan that really loaded (after fallbacks) when it is the selected model with the current
        settings; otherwise a fresh plan for this machine, whatever the what-if card shown."""
        if self.model is None:
            return None
        lo = self.loaded
        if lo is not None and lo.inputs.model_path == self.model.path and lo.inputs.settings == self.settings \
                and lo.inputs.headroom == self.headroom:
            return lo.plan
        try:
            return make_plan(self.model, self.settings, self.machine, self.headroom, suggest=False)
        except Exception:  # noqa: BLE001 - nothing to export; plan_error says why
            return None

    def export_spec(self, *, let_ollama_decide: bool = False,
                    messages: Iterable[tuple[str, str]] = ()) -> ExportSpec | None:
        """The Modelfile spec for ``export_plan()`` and the chat's settings (core.export rules)."""
        plan = self.export_plan()
        if plan is None:
            return None
        extra = []
        if self.is_what_if():
            extra.append(f"The what-if card ({self.hardware_choice}) was only for planning: this file is for "
                         "this machine's hardware.")
        return spec_for_plan(plan, self.sampling, requested=self.settings, let_ollama_decide=let_ollama_decide,
                             messages=messages, extra_notes=extra)

    # ---- import and chat settings -------------------------------------------------------------------------------
    def begin_import(self, spec: ModelfileSpec) -> bool:
        """Take an imported Modelfile: its sampling now, its load settings when its model is selected.
        True when its model is already selected (and the settings are applied now)."""
        self.pending_import = spec
        self.sampling = spec.sampling
        self._tell(Change.SAMPLING)
        if self.model is not None and self.model.path == spec.from_path:
            self._apply_pending_import()
            self.replan()
            self._tell(Change.SETTINGS, Change.PLAN)
            return True
        return False

    def _apply_pending_import(self) -> bool:
        spec = self.pending_import
        if spec is None or self.model is None or self.model.path != spec.from_path:
            return False
        self.pending_import = None
        self.settings = spec.apply_to(self.settings)
        self.sampling = spec.sampling
        return True

    def set_sampling(self, sampling: SamplingSettings) -> None:
        if sampling != self.sampling:
            self.sampling = sampling
            self._tell(Change.SAMPLING)


def placement_extras(plan: Plan) -> str:
    """What else the plan keeps in RAM besides whole layers: "MoE expert weights in RAM", "" if nothing."""
    extras = []
    if plan.settings.experts_on_cpu and plan.model.n_expert:
        extras.append("MoE expert weights in RAM")
    if not plan.settings.offload_kqv:
        extras.append("KV cache in RAM")
    return ", ".join(extras)


def describe_placement(plan: Plan) -> str:
    """One line for the meter's headline: "48 of 65 layers on the GPU", naming experts in RAM."""
    extras = placement_extras(plan)
    return f"{plan.gpu_layers} of {plan.n_layers_total} layers on the GPU" + (f", {extras}" if extras else "")


__all__ = ["THIS_MACHINE", "Change", "LoadRequest", "Loaded", "MeterSource", "PlanInputs", "Session", "describe_placement", "placement_extras"]
