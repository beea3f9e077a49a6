"""Every command and every bot-level button, declared once.

A feature registers what it offers here, from the composition root: a command's
name, who may use it, whether it works in a group and after a gathering has
closed, and the handler. The dispatcher routes by these declarations; channels
read them for their command lists (Slack's subcommands, Telegram's menu), help
texts list them, and a test runs each one through every channel.

Commands with no handler belong to the guide under way (`/skip`, `/back`): the
engine declares them beside its handlers (`bot.flows.engine.GUIDE_COMMANDS`), the
dispatcher declares them here and hands them to the engine. A handler may return
`TO_GUIDE` to let the guide hear the command too (`/stop` ends the run and the
check-ins).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from bot.conversation.turn import Turn

# What a command handler returns: the person's run status afterwards, if it changed
# one (for the channel's acknowledgement), or TO_GUIDE to pass the command on.
TO_GUIDE = "\x00to-guide"

CommandHandler = Callable[[Turn, str], Awaitable[str | None]]
ButtonHandler = Callable[[Turn, str], Awaitable[str | None]]
RoleOf = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True)
class Command:
    """One command, as every part of the bot sees it."""

    name: str
    handler: CommandHandler | None = None  # None: the guide under way handles it
    roles: frozenset[str] = frozenset()  # who may use it; empty: anyone
    refusal: str = "only_facilitators"  # the phrase for someone without the role
    in_groups: bool = False  # answered in a group chat or channel (to the room)
    after_close: bool = False  # works in a run whose gathering has closed
    listed: bool = True  # in everyone's /help and the platforms' command menus
    usage: str = ""  # the argument, as help shows it: "CODE", "[until DATE]"
    # Roles whose /help lists it although anyone may send it (a gathering's host's own:
    # the handler checks they host it).
    help_for: frozenset[str] = frozenset()

    @property
    def help_key(self) -> str:
        """The locale key of its one-line description (`command_<name>`)."""
        return f"command_{self.name}"


class Router:
    """The table of commands and bot-level buttons; the dispatcher owns one."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}
        self._buttons: dict[str, ButtonHandler] = {}
        self._yes_no: set[str] = set()  # steps of yes-or-no questions (`button`)
        self._deep_links: set[str] = set()

    def command(
        self,
        name: str,
        handler: CommandHandler | None = None,
        *,
        roles: Iterable[str] = (),
        refusal: str = "only_facilitators",
        in_groups: bool = False,
        after_close: bool = False,
        listed: bool = True,
        usage: str = "",
        deep_link: bool = False,
        help_for: Iterable[str] = (),
    ) -> None:
        """Declare a command. `deep_link`: `/start NAME-ARG` means `/NAME ARG` (a link
        into a private chat, such as t.me/bot?start=join-K7M2QP)."""
        if name in self._commands:
            raise ValueError(f"the command /{name} is declared twice")
        self._commands[name] = Command(
            name, handler, frozenset(roles), refusal, in_groups, after_close, listed, usage,
            frozenset(help_for),
        )  # fmt: skip
        if deep_link:
            self._deep_links.add(name)

    def button(self, step: str, handler: ButtonHandler, *, yes_no: bool = False) -> None:
        """Declare a bot-level button (a confirmation, an offer, a menu) by its step.
        `yes_no`: its question has two answers, the first meaning yes, so a typed yes or
        no answers it (never so for a menu: "no" must not pick its second item)."""
        if step in self._buttons:
            raise ValueError(f"the button step {step} is declared twice")
        self._buttons[step] = handler
        if yes_no:
            self._yes_no.add(step)

    def is_yes_no(self, step: str) -> bool:
        return step in self._yes_no

    def find(self, name: str) -> Command | None:
        return self._commands.get(name)

    def button_for(self, step: str) -> ButtonHandler | None:
        return self._buttons.get(step)

    def deep_link(self, command: tuple[str, str]) -> tuple[str, str]:
        """`/start join-K7M2QP` -> `/join K7M2QP`; anything else unchanged."""
        name, arg = command
        if name == "start" and "-" in arg:
            action, _, rest = arg.partition("-")
            if action in self._deep_links:
                return action, rest
        return command

    def commands(self) -> list[Command]:
        """Every command, in the order declared."""
        return list(self._commands.values())

    def listed(self) -> list[Command]:
        """What everyone may use, in the order declared: for /help and command menus."""
        return [c for c in self._commands.values() if c.listed and not c.roles]

    def for_role(self, role: str | None) -> list[Command]:
        """What only some may use and this role may, in the order declared: for /help."""
        return [c for c in self._commands.values()
                if (c.listed and role in c.roles) or role in c.help_for]  # fmt: skip

    def names(self) -> set[str]:
        return set(self._commands)

    def room_commands(self) -> set[str]:
        """Commands answered in a group or channel, to the room."""
        return {c.name for c in self._commands.values() if c.in_groups}

    async def allowed(self, command: Command, turn: Turn, role_of: RoleOf) -> bool:
        """Whether this person may use it; if not, they are told so (privately)."""
        if not command.roles or await role_of(turn.actor) in command.roles:
            return True
        turn.privately(turn.text(command.refusal))
        return False
