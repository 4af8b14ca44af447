"""Importing a Modelfile into LayerFit, with a report: every problem at once, with line numbers.

``core.modelfile`` reads a Modelfile the way Ollama's parser does and stops at the first error. An import
is friendlier: this layer walks every instruction, collects *all* problems, accepts with a warning what
Ollama accepts with a warning (a deprecated PARAMETER is ignored, a setting given twice keeps its last
value), and names what LayerFit reads but does not apply (TEMPLATE, ADAPTER, MESSAGE, LICENSE, …), so
nothing is dropped without a word. The spec itself still comes from ``core.modelfile.parse_modelfile``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core import modelfile as mf
from core.modelfile import DEPRECATED_PARAMETERS, ModelfileError, ModelfileSpec
from core.sampling import SamplingSettings

#: What LayerFit does not apply, and why (named in the report, never dropped silently).
NOT_APPLIED: dict[str, str] = {
    "template": "LayerFit chats with the model's own chat template; the TEMPLATE is kept only for a re-export",
    "adapter": "LayerFit loads no LoRA adapters",
    "message": "the chat does not start with these messages in LayerFit",
    "license": "kept as text only",
    "draft": "LayerFit loads no draft model",
    "renderer": "LayerFit formats chats with the model's own template",
    "parser": "LayerFit shows replies as they come",
    "requires": "a minimum Ollama version; LayerFit does not need it",
}


@dataclass(frozen=True)
class Problem:
    line: int | None
    text: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.text}" if self.line else self.text


@dataclass(frozen=True)
class ImportReport:
    """The result of an import: ``spec`` (None when there are errors) and what the user must hear."""

    spec: ModelfileSpec | None
    errors: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    not_applied: tuple[Problem, ...] = ()
    name: str = field(default="Modelfile")

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.errors

    def summary(self) -> str:
        """Every problem, warning and unapplied instruction, one per line."""
        out: list[str] = []
        if self.errors:
            out.append(f"{self.name} has {len(self.errors)} problem{'s' if len(self.errors) != 1 else ''}; "
                       "nothing was imported:")
            out += [f"  {p}" for p in self.errors]
        if self.warnings:
            out.append("Warnings (Ollama accepts these too):")
            out += [f"  {p}" for p in self.warnings]
        if self.not_applied:
            out.append("Read but not applied:")
            out += [f"  {p}" for p in self.not_applied]
        return "\n".join(out)


def _check(cmd: mf.Instruction, base: str, require_file: bool) -> None:
    """The checks ``parse_modelfile`` makes on one instruction (raises ModelfileError)."""
    if cmd.word == "from":
        mf._resolve_from(cmd, base, require_file)
    elif cmd.word in ("adapter", "draft"):
        mf._resolve_other(cmd, base, require_file)
    elif cmd.word == "requires":
        mf._check_semver(cmd.args, cmd.line)
    elif cmd.word == "parameter":
        mf._check_parameter_name(cmd)
        value = mf._parse_value(cmd)
        if cmd.name == "stop" and value == "":
            raise ModelfileError(cmd.line, "an empty stop string would end every reply; remove the line")
        if cmd.name != "stop":
            mf._apply_parameter(cmd, value, {}, {}, [])


def check_modelfile(text: str, base_dir: str | Path, *, sampling: SamplingSettings | None = None,
                    require_file: bool = True, name: str = "Modelfile") -> ImportReport:
    """Read ``text`` (a Modelfile in ``base_dir``) into an ImportReport."""
    base = str(Path(base_dir).absolute())
    try:
        commands, _comments = mf.lex_modelfile(text)
    except ModelfileError as exc:  # the file can't even be split into instructions
        return ImportReport(None, (Problem(exc.line, _message(exc)),), name=name)
    errors: list[Problem] = []
    warnings: list[Problem] = []
    not_applied: list[Problem] = []
    drop: set[int] = set()  # lines of instructions Ollama ignores (removed before the real parse)
    last: dict[str, mf.Instruction] = {}
    froms = [c for c in commands if c.word == "from"]
    if not froms:
        errors.append(Problem(None, "no FROM line: a Modelfile must say which model file to use "
                                    "(FROM /path/to/model.gguf)"))
    for extra in froms[1:]:
        errors.append(Problem(extra.line, f"a second FROM (the first is on line {froms[0].line}); LayerFit "
                                          "loads one GGUF file"))
    for cmd in commands:
        if cmd.word == "parameter" and cmd.name in DEPRECATED_PARAMETERS:
            warnings.append(Problem(cmd.line, f"parameter {cmd.name!r} is deprecated and Ollama ignores it "
                                              f"({DEPRECATED_PARAMETERS[cmd.name]})"))
            drop.update(_span(cmd))
            continue
        try:
            _check(cmd, base, require_file)
        except ModelfileError as exc:
            errors.append(Problem(exc.line or cmd.line, _message(exc)))
            continue
        if cmd.word in NOT_APPLIED:
            not_applied.append(Problem(cmd.line, f"{cmd.word.upper()}: {NOT_APPLIED[cmd.word]}"))
        key = cmd.name if cmd.word == "parameter" else cmd.word
        if cmd.word in ("from", "message", "license") or key == "stop":
            continue
        if key in last:  # Ollama keeps the last value, without a word; LayerFit says so
            first = last[key]
            warnings.append(Problem(cmd.line, f"{key} is set again (first on line {first.line}); like Ollama, "
                                              "LayerFit keeps this last value"))
            drop.update(_span(first))
        last[key] = cmd
    if errors:
        return ImportReport(None, tuple(errors), tuple(warnings), tuple(not_applied), name)
    kept = "".join(line for i, line in enumerate(text.splitlines(keepends=True), 1) if i not in drop)
    try:
        spec = mf.parse_modelfile(kept, base, sampling=sampling, require_file=require_file)
    except ModelfileError as exc:  # anything the per-instruction checks can't see (the LayerFit comment line)
        return ImportReport(None, (Problem(exc.line, _message(exc)),), tuple(warnings), tuple(not_applied), name)
    return ImportReport(spec, (), tuple(warnings), tuple(not_applied), name)


def read_import(path: str | Path, *, sampling: SamplingSettings | None = None) -> ImportReport:
    """``check_modelfile`` for the file at ``path`` (UTF-8, or UTF-16 with a BOM, as Ollama reads it)."""
    p = Path(path)
    try:
        data = p.read_bytes()
        text = data.decode("utf-16") if data.startswith((b"\xff\xfe", b"\xfe\xff")) else data.decode("utf-8-sig")
    except FileNotFoundError:
        return ImportReport(None, (Problem(None, f"no such Modelfile: {p}"),), name=p.name)
    except IsADirectoryError:
        return ImportReport(None, (Problem(None, f"{p} is a folder, not a Modelfile"),), name=p.name)
    except OSError as exc:
        return ImportReport(None, (Problem(None, f"could not read {p}: {exc.strerror or exc}"),), name=p.name)
    except UnicodeDecodeError as exc:
        return ImportReport(None, (Problem(None, f"{p.name} is not UTF-8 text (byte {exc.start} can't be "
                                                 "read)"),), name=p.name)
    return check_modelfile(text, p.parent, sampling=sampling, name=p.name)


def _span(cmd: mf.Instruction) -> range:
    """The lines an instruction takes (a triple-quoted value may span several)."""
    return range(cmd.line, cmd.line + cmd.args.count("\n") + 1)


def _message(exc: ModelfileError) -> str:
    """The error's words without its own "line N: " prefix (the report adds it)."""
    return str(getattr(exc, "message", exc))
