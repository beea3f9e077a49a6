"""The flow engine: (state, input, now) -> (new state, events). Pure: no I/O, no clock.

A `Flow` binds one guide to the bot's phrasebook. `start` begins a run and
`resume` takes one input; both return an `Outcome` and never mutate what they
were given. The caller stores the state and carries out the events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.flows.answers import (
    AnswerValue,
    Invalid,
    Parsed,
    check_choices,
    display,
    parse_answer,
    tapped_option,
)
from bot.flows.commands import parse_command
from bot.flows.events import (
    CONSENT_STEP,
    DONE_VALUE,
    LANGUAGE_STEP,
    AnswerGiven,
    AnswerWithdrawn,
    Button,
    Command,
    ConsentDecided,
    Event,
    Input,
    InputKind,
    Open,
    Outcome,
    Picked,
    Remind,
    Repeat,
    Reply,
    RunEnded,
    Tap,
    TextInput,
    Timeout,
)
from bot.flows.expressions import condition_names, holds, render
from bot.flows.guide import Guide, Step, StepKind
from bot.flows.phrases import Phrasebook
from bot.flows.run import RunState, RunStatus
from bot.flows.scrub import scrub
from bot.flows.text import Text, fold, fold_answer, localize

_INPUT_KIND = {
    StepKind.CHOOSE: InputKind.CHOICE,
    StepKind.CHOOSE_MANY: InputKind.CHOICES,
    StepKind.SCALE: InputKind.SCALE,
    StepKind.NUMBER: InputKind.NUMBER,
    StepKind.ASK: InputKind.TEXT,
}


@dataclass
class _Turn:
    """The state being built by one call, and the events it has produced so far."""

    state: RunState
    events: list[Event] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def outcome(self) -> Outcome:
        return Outcome(self.state, tuple(self.events))


@dataclass(frozen=True)
class GuideCommand:
    """A command the guide under way answers, as the router declares it."""

    name: str
    # It means the same once the run has ended or its gathering has closed, so it is
    # answered then too (by the dispatcher, with no run to resume). /skip and /back are not.
    after_end: bool = False
    listed: bool = True  # in everyone's /help and the platforms' command menus
    usage: str = ""  # the argument, as help shows it


_Handler = Callable[["Flow", _Turn, str], None]
# The guide's commands, each declared once, beside its handler (`_guide_command`): the
# dispatcher declares these to the router with no handler of their own, so they come here.
GUIDE_COMMANDS: dict[str, GuideCommand] = {}
_HANDLERS: dict[str, _Handler] = {}


def _guide_command(
    name: str,
    *,
    after_end: bool = False,
    listed: bool = True,
    usage: str = "",
    declare: bool = True,
) -> Callable[[_Handler], _Handler]:
    """Make a `Flow` method the handler of `/name`. `declare=False`: a feature declares
    the command and passes it on to the guide (/stop, which also ends the check-ins)."""

    def register(handler: _Handler) -> _Handler:
        if declare:
            GUIDE_COMMANDS[name] = GuideCommand(name, after_end, listed, usage)
        _HANDLERS[name] = handler
        return handler

    return register


class Flow:
    """One guide, ready to run: the engine's entry points."""

    def __init__(self, guide: Guide, phrases: Phrasebook, *, max_answer_chars: int = 4000):
        self.guide = guide
        self.phrases = phrases
        self.max_answer_chars = max_answer_chars

    # Entry points -----------------------------------------------------------

    def start(
        self,
        *,
        run_id: str,
        guide_hash: str,
        language: str,
        now: datetime,
        gate: int | None = None,
    ) -> Outcome:
        guide = self.guide
        state = RunState(
            run_id=run_id,
            guide_id=guide.id,
            guide_version=guide.version,
            guide_hash=guide_hash,
            language=self.pick_language(language),
            status=RunStatus.CONSENT if guide.consent is not None else RunStatus.ACTIVE,
            started_at=now,
            updated_at=now,
            gate=gate,
        )
        turn = _Turn(state)
        turn.emit(Reply(self._intro(state)))
        if state.status is RunStatus.CONSENT:
            turn.emit(self._consent_prompt(state))
        else:
            self._advance(turn, 0)
        return turn.outcome()

    def expired(self, state: RunState, now: datetime) -> bool:
        """Whether a run left idle since its last move has passed the guide's expiry."""
        return now - state.updated_at > self.guide.expiry

    def resume(self, state: RunState, given: Input, now: datetime) -> Outcome:
        # The caller's state is never changed. A shallow copy with fresh containers is
        # enough (the engine mutates only `answers`, `asked` and `pending` in place, and
        # replaces answer values whole); a deep copy was a tenth of each answer's CPU.
        fresh = {"answers": dict(state.answers), "asked": list(state.asked),
                 "pending": list(state.pending)}  # fmt: skip
        turn = _Turn(state.model_copy(update=fresh))
        current = turn.state
        if current.status.ended:
            if not isinstance(given, Timeout):
                turn.emit(Reply(self._say(current, "finished_already")))
            return turn.outcome()
        if self.expired(current, now):
            # Before consent nothing may be kept, so an unanswered invitation is a decline.
            ended = RunStatus.DECLINED if current.status is RunStatus.CONSENT else RunStatus.EXPIRED
            self._end(turn, ended, None if isinstance(given, Timeout) else "expired")
            return turn.outcome()
        if isinstance(given, Timeout):
            return turn.outcome()
        if isinstance(given, TextInput) and (command := parse_command(given.text)) is not None:
            given = Command(*command)
        current.updated_at = now
        if isinstance(given, Open):
            self._open(turn, given.part)
        elif isinstance(given, Repeat | Remind):
            key = "welcome_back" if isinstance(given, Repeat) else "reminder"
            turn.emit(Reply(self._say(current, key)))
            self._reprompt(turn)
        elif isinstance(given, Command):
            self._command(turn, given)
        elif current.choosing_language and self._choose_language(turn, given):
            pass
        elif current.status is RunStatus.CONSENT:
            self._consent(turn, given)
        elif current.waiting:
            turn.emit(Reply(self._say(current, "still_waiting")))
        else:
            self._answer(turn, given)
        return turn.outcome()

    def pick_language(self, wanted: str | None) -> str:
        """The guide language closest to what the participant asked for."""
        if wanted:
            for candidate in (wanted, wanted.split("-")[0].lower()):
                if candidate in self.guide.languages:
                    return candidate
        return self.guide.default_language

    # Consent ----------------------------------------------------------------

    def _consent(self, turn: _Turn, given: Input) -> None:
        decision: bool | None = None
        if isinstance(given, Tap) and given.step == CONSENT_STEP:
            decision = given.value == "yes"
        elif isinstance(given, TextInput):
            decision = self._yes_or_no(turn.state, given.text)
        if decision is None:
            turn.emit(Reply(self._say(turn.state, "consent_again")))
            turn.emit(self._consent_prompt(turn.state))
            return
        turn.emit(ConsentDecided(decision))
        if decision:
            turn.state.status = RunStatus.ACTIVE
            self._advance(turn, 0)
        else:
            self._end(turn, RunStatus.DECLINED, "declined")

    def _yes_or_no(self, state: RunState, typed: str) -> bool | None:
        key = fold_answer(typed)
        if key in ("1", fold_answer(self._say(state, "agree"))):
            return True
        if key in ("2", fold_answer(self._say(state, "decline"))):
            return False
        return self.phrases.yes_or_no(state.language, typed)

    # Answers ----------------------------------------------------------------

    def _answer(self, turn: _Turn, given: Input) -> None:
        state = turn.state
        assert state.step is not None  # an active run always waits on a question
        step = self.guide.step(state.step)
        result: Parsed | Invalid
        if isinstance(given, (Tap, Picked)) and given.step != step.id:
            turn.emit(Reply(self._say(state, "stale_button")))
            self._reprompt(turn)
            return
        if isinstance(given, Picked):
            chosen = [tapped_option(step, value) for value in given.values]
            if step.kind is not StepKind.CHOOSE_MANY or None in chosen:
                self._reprompt(turn)
                return
            state.pending = list(dict.fromkeys(c for c in chosen if c is not None))
            result = check_choices(step, state.pending)
        elif isinstance(given, Tap):
            if step.kind is StepKind.CHOOSE_MANY and given.value != DONE_VALUE:
                self._toggle(turn, step, given.value)
                return
            result = self._tapped(step, given.value, state)
        else:
            assert isinstance(given, TextInput)
            typed = given.text
            if len(typed) > self.max_answer_chars:
                if step.kind is StepKind.ASK:
                    result = Invalid("too_long", {"limit": self.max_answer_chars})
                else:
                    # Not read at all (splitting 40,000 characters into choices costs the
                    # loop): refused as that kind's answer is, as if nothing was typed.
                    result = parse_answer(step, "", self.max_answer_chars)
            else:
                result = parse_answer(step, typed, self.max_answer_chars)
        if isinstance(result, Invalid):
            turn.emit(Reply(self._say(state, result.reason, **result.params)))
            self._reprompt(turn)
            return
        value = result.value
        if step.kind is StepKind.ASK and step.scrub and isinstance(value, str):
            value = scrub(value)
        self._record(turn, step, value)
        self._advance(turn, self.guide.index_of(step.id) + 1)

    def _tapped(self, step: Step, value: str, state: RunState) -> Parsed | Invalid:
        if step.kind is StepKind.CHOOSE_MANY:
            return check_choices(step, state.pending)
        if step.kind is StepKind.CHOOSE:
            option = tapped_option(step, value)
            return Parsed(option) if option else Invalid("invalid_choice")
        return parse_answer(step, value, self.max_answer_chars)

    def _toggle(self, turn: _Turn, step: Step, value: str) -> None:
        pending = turn.state.pending
        option_id = tapped_option(step, value)
        if option_id is None:
            self._reprompt(turn)
            return
        if option_id in pending:
            pending.remove(option_id)
        else:
            pending.append(option_id)
        prompt = self._prompt(turn.state, step)
        turn.emit(
            Reply(
                prompt.text,
                prompt.buttons,
                prompt.input,
                prompt.progress,
                prompt.hint,
                prompt.step,
                update=True,
            )
        )

    def _record(self, turn: _Turn, step: Step, value: AnswerValue) -> None:
        state = turn.state
        state.answers[step.id] = value
        state.asked.append(step.id)
        state.pending = []
        shown = display(self.guide, step, value, state.language)
        turn.emit(AnswerGiven(step.id, step.kind.value, value, shown))

    # Moving through the guide -----------------------------------------------

    def _advance(self, turn: _Turn, index: int) -> None:
        """Say what there is to say from `index` on, and stop at the next question."""
        state = turn.state
        conditions = self._condition_context(state)
        for step in self.guide.steps[index:]:
            if step.when and not holds(step.when, conditions):
                continue
            if step.kind is StepKind.SAY:
                turn.emit(Reply(self._render(state, step.text)))
                continue
            state.step = step.id
            if state.gate is not None and self._number(step) > state.gate:
                # Paced: this question opens when the facilitator moves the room on.
                state.waiting = True
                turn.emit(Reply(self._say(state, "wait_for_group")))
                return
            state.waiting = False
            turn.emit(self._prompt(state, step))
            return
        self._end(turn, RunStatus.FINISHED, None)

    def _number(self, step: Step) -> int:
        """A question's place among the guide's questions, from 1: its part when paced."""
        return next(i for i, q in enumerate(self.guide.questions, start=1) if q.id == step.id)

    def _open(self, turn: _Turn, part: int) -> None:
        state = turn.state
        state.gate = max(state.gate or 0, part)
        if state.waiting and state.step is not None:
            step = self.guide.step(state.step)
            if self._number(step) <= state.gate:
                state.waiting = False
                turn.emit(self._prompt(state, step))

    def _end(self, turn: _Turn, status: RunStatus, phrase: str | None) -> None:
        if status in (RunStatus.STOPPED, RunStatus.EXPIRED):
            turn.state.left_at = turn.state.step
        turn.state.status = status
        turn.state.step = None
        turn.state.pending = []
        turn.state.choosing_language = False
        turn.state.waiting = False
        turn.emit(RunEnded(status))
        if phrase:
            turn.emit(Reply(self._say(turn.state, phrase)))

    def _reprompt(self, turn: _Turn) -> None:
        asked = self.asking(turn.state)
        if asked is not None:
            turn.emit(asked)

    def asking(self, state: RunState) -> Reply | None:
        """What a run is asking now, as it asks it (None: nothing, it has ended): for the
        person again, after something else was said meanwhile."""
        if state.status is RunStatus.CONSENT:
            return self._consent_prompt(state)
        if state.status is RunStatus.ACTIVE and state.waiting:
            return Reply(self._say(state, "still_waiting"))
        if state.status is RunStatus.ACTIVE and state.step is not None:
            return self._prompt(state, self.guide.step(state.step))
        return None

    # Commands ---------------------------------------------------------------

    def _command(self, turn: _Turn, command: Command) -> None:
        handle = _HANDLERS.get(command.name.lower())
        if handle is not None:
            handle(self, turn, command.arg)
            return
        turn.emit(Reply(self._say(turn.state, "unknown_command", command="/" + command.name)))
        self._reprompt(turn)

    @_guide_command("stop", declare=False)
    def _stop(self, turn: _Turn, arg: str) -> None:
        if turn.state.status is RunStatus.CONSENT:
            self._end(turn, RunStatus.DECLINED, "declined")
        else:
            self._end(turn, RunStatus.STOPPED, "stopped")

    @_guide_command("skip")
    def _skip(self, turn: _Turn, arg: str) -> None:
        state = turn.state
        if state.waiting:
            turn.emit(Reply(self._say(state, "still_waiting")))
        elif state.status is not RunStatus.ACTIVE or not state.step:
            self._consent_again(turn)
        elif (step := self.guide.step(state.step)).optional:
            self._record(turn, step, None)
            self._advance(turn, self.guide.index_of(step.id) + 1)
        else:
            turn.emit(Reply(self._say(state, "cannot_skip")))
            self._reprompt(turn)

    @_guide_command("back")
    def _back(self, turn: _Turn, arg: str) -> None:
        state = turn.state
        if state.status is not RunStatus.ACTIVE:
            self._consent_again(turn)
            return
        if not state.asked:
            turn.emit(Reply(self._say(state, "first_question")))
        else:
            previous = state.asked.pop()
            before = state.answers.pop(previous, None)
            if before is not None:
                # Show what they had answered, so they can keep or change it.
                shown = display(self.guide, self.guide.step(previous), before, state.language)
                turn.emit(Reply(self._say(state, "back_previous", answer=_short(shown))))
            state.pending = []
            state.step = previous
            state.waiting = False
            turn.emit(AnswerWithdrawn(previous))
        self._reprompt(turn)

    def _consent_again(self, turn: _Turn) -> None:
        """/skip or /back while consent is asked: there is nothing to skip or go back to."""
        turn.emit(Reply(self._say(turn.state, "consent_again")))
        self._reprompt(turn)

    @_guide_command("help", after_end=True, listed=False)
    def _help(self, turn: _Turn, arg: str) -> None:
        state = turn.state
        help_text = self._say(state, "help")
        if state.step is not None:
            extra = self.guide.step(state.step).help
            if extra is not None:
                help_text = self._render(state, extra) + "\n\n" + help_text
        turn.emit(Reply(help_text))
        self._reprompt(turn)

    @_guide_command("privacy", after_end=True)
    def _privacy(self, turn: _Turn, arg: str) -> None:
        turn.emit(Reply(self._say(turn.state, "privacy")))
        self._reprompt(turn)

    @_guide_command("language", after_end=True, usage="[en|es]")
    def _language_command(self, turn: _Turn, wanted: str) -> None:
        state = turn.state
        if wanted.strip():
            if not self._choose_language(turn, TextInput(wanted)):
                listed = ", ".join(self.phrases.language_name(c) for c in self.guide.languages)
                turn.emit(Reply(self._say(state, "language_unknown", languages=listed)))
                self._reprompt(turn)
            return
        state.choosing_language = True
        buttons = tuple(
            Button(self.phrases.language_name(code), LANGUAGE_STEP, code, code == state.language)
            for code in self.guide.languages
        )
        turn.emit(
            Reply(
                self._say(state, "language_prompt"),
                buttons,
                InputKind.CHOICE,
                step=LANGUAGE_STEP,
            )
        )

    def _choose_language(self, turn: _Turn, given: Input) -> bool:
        """Switch language if `given` names one of the guide's; False if it names none."""
        state = turn.state
        chosen: str | None = None
        if isinstance(given, Tap) and given.step == LANGUAGE_STEP:
            chosen = given.value if given.value in self.guide.languages else None
        elif isinstance(given, TextInput):
            key = fold(given.text)
            for number, code in enumerate(self.guide.languages, start=1):
                if key in (code, str(number), fold(self.phrases.language_name(code))):
                    chosen = code
        state.choosing_language = False
        if chosen is None:
            return False
        state.language = chosen
        turn.emit(Reply(self._say(state, "language_set")))
        self._reprompt(turn)
        return True

    # Rendering ----------------------------------------------------------------

    def _say(self, state: RunState, key: str, **params: object) -> str:
        return self.phrases.text(state.language, key, **params)

    def _local(self, state: RunState, text: Text | None) -> str:
        return localize(text, state.language, self.guide.default_language)

    def _render(self, state: RunState, text: Text) -> str:
        return render(self._local(state, text), self._template_context(state)).strip()

    def _intro(self, state: RunState) -> str:
        parts = [self._say(state, "intro", title=self._local(state, self.guide.title))]
        if self.guide.summary is not None:
            parts.append(self._render(state, self.guide.summary))
        if self.guide.minutes:
            # "about 1 minutes" reads wrong: one minute has its own phrase.
            key = "about_a_minute" if self.guide.minutes == 1 else "about_minutes"
            parts.append(self._say(state, key, minutes=self.guide.minutes))
        return "\n".join(parts)

    def _consent_prompt(self, state: RunState) -> Reply:
        text = self._render(state, self.guide.consent or "")
        buttons = (
            Button(self._say(state, "agree"), CONSENT_STEP, "yes"),
            Button(self._say(state, "decline"), CONSENT_STEP, "no"),
        )
        question = self._say(state, "consent_question")
        return Reply(f"{text}\n\n{question}", buttons, InputKind.CHOICE, step=CONSENT_STEP)

    def _prompt(self, state: RunState, step: Step) -> Reply:
        hints: list[str] = []
        buttons: tuple[Button, ...] = ()
        if step.kind in (StepKind.CHOOSE, StepKind.CHOOSE_MANY):
            buttons = tuple(
                Button(self._local(state, o.label), step.id, o.id, o.id in state.pending)
                for o in step.option_list()
            )
        if step.kind is StepKind.CHOOSE_MANY:
            low, high = step.choice_bounds()
            key = "choose_many_hint" if low <= 1 else "choose_many_range_hint"
            hints.append(self._say(state, key, min=low, max=high))
            buttons += (Button(self._say(state, "done"), step.id, DONE_VALUE),)
        elif step.kind is StepKind.SCALE:
            low, high = step.scale_range()
            buttons = tuple(Button(str(v), step.id, str(v)) for v in range(low, high + 1))
            if step.labels:
                hints.append(
                    " · ".join(
                        f"{value} = {self._local(state, label)}"
                        for value, label in sorted(step.labels.items())
                    )
                )
        elif step.kind is StepKind.NUMBER:
            if step.range is not None:
                low_n, high_n = (int(v) if v.is_integer() else v for v in step.range)
                hints.append(self._say(state, "number_hint", low=low_n, high=high_n))
            else:
                hints.append(self._say(state, "number_any_hint"))
        if step.optional:
            hints.append(self._say(state, "optional_hint"))
        return Reply(
            self._render(state, step.text),
            buttons,
            _INPUT_KIND[step.kind],
            progress=self._progress(state, step),
            hint="\n".join(hints) or None,
            step=step.id,
            controls=self._controls(state, step),
        )

    def _controls(self, state: RunState, step: Step) -> tuple[Button, ...]:
        names = ["skip"] if step.optional else []
        if state.asked:
            names.append("back")
        names.append("stop")
        return tuple(Button(self._say(state, f"{name}_button"), step.id, name) for name in names)

    def question(self, state: RunState, step_id: str) -> str:
        """The text a question was asked with, to show beside its answer once given."""
        if step_id == CONSENT_STEP:
            return self._render(state, self.guide.consent or "")
        return self._render(state, self.guide.step(step_id).text)

    def _progress(self, state: RunState, step: Step) -> str:
        """Progress such as "3 of 8": where this question stands among all the guide's
        questions. The total never changes; a question skipped by its condition is
        stepped over, so the count may jump forward, never back or past the end."""
        questions = self.guide.questions
        number = next(i for i, q in enumerate(questions, start=1) if q.id == step.id)
        return self._say(state, "progress", n=number, total=len(questions))

    def _decided(self, condition: str, here: int) -> bool:
        """Whether every answer a condition uses is already given (or passed by)."""
        positions = {s.id: i for i, s in enumerate(self.guide.steps)}
        return all(positions.get(name, here) < here for name in condition_names(condition))

    def _condition_context(self, state: RunState) -> dict[str, AnswerValue]:
        context: dict[str, AnswerValue] = {s.id: None for s in self.guide.questions}
        context.update(state.answers)
        return context

    def _template_context(self, state: RunState) -> dict[str, Any]:
        context: dict[str, Any] = {
            "guide": {
                "id": self.guide.id,
                "title": self._local(state, self.guide.title),
                "summary": self._local(state, self.guide.summary),
                "minutes": self.guide.minutes,
            }
        }
        for step in self.guide.questions:
            value = state.answers.get(step.id)
            context[step.id] = (
                None if value is None else display(self.guide, step, value, state.language)
            )
        return context


def _short(text: str, limit: int = 200) -> str:
    """An answer shown back in a sentence: long ones end with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
