"""Configuration from the environment and `.env`, validated once at start-up."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The shape of a token from @BotFather: the bot's number, a colon, then (in real tokens)
# 35 letters, digits, - or _. Checked before anything is sent, so a pasted word or a
# stray quote is named at once instead of after a trip to Telegram.
TELEGRAM_TOKEN = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{1,100}$")
# KT_ADMINS entries: a Telegram user id; a Slack workspace and user id; a terminal name.
ADMIN_ID = {
    "telegram": re.compile(r"^-?[0-9]{1,20}$"),
    "slack": re.compile(r"^[A-Z0-9]{2,20}/[A-Z0-9]{2,20}$"),
    "terminal": re.compile(r"^\S{1,64}$"),
}


class Settings(BaseSettings):
    """Every setting Kitchen Table reads; the README's configuration table mirrors this."""

    model_config = SettingsConfigDict(
        env_prefix="KT_", env_file=".env", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(Path("data"), description="Where the database and secret live.")
    database: Path | None = Field(
        None, description="SQLite file; default DATA_DIR/kitchen-table.db"
    )
    database_url: SecretStr | None = Field(
        None,
        description="postgresql://user:password@host/db to use PostgreSQL (several "
        "instances); unset: SQLite in DATA_DIR.",
    )
    db_pool_size: int = Field(
        10, ge=1, le=1000, description="PostgreSQL connections each instance keeps open."
    )
    secret_key: SecretStr | None = Field(
        None, description="Keys pseudonyms and address encryption; generated if unset."
    )
    guides_dir: Path = Field(Path("guides"), description="Folder of YAML guides.")
    default_guide: str = Field("changing-work", description="Guide the terminal opens.")
    max_answer_chars: int = Field(
        4000, ge=1, le=100_000, description="Longest answer kept; longer ones are asked to shorten."
    )
    host: str = Field("127.0.0.1", description="Address the bot's web server listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Port of the bot's web server.")
    telegram_bot_token: SecretStr | None = Field(
        None, validation_alias="TELEGRAM_BOT_TOKEN", description="Turns on Telegram (@BotFather)."
    )
    telegram_bot_username: str | None = Field(
        None,
        validation_alias="TELEGRAM_BOT_USERNAME",
        pattern=r"^[A-Za-z][A-Za-z0-9_]{3,31}$",
        description="The bot's @username, for links and QR codes without asking Telegram.",
    )
    telegram_api_url: str | None = Field(None, description="Bot API base URL (self-hosted).")
    public_url: str | None = Field(None, description="Public https URL: turns on webhooks.")
    telegram_max_per_second: int = Field(
        30, ge=1, le=100_000, description="Messages/s to all chats (more with paid broadcasts)."
    )
    telegram_max_per_chat: float = Field(
        1.0, gt=0, le=1000, description="Messages/s to one private chat, after a burst of 3."
    )

    admins: str = Field(
        "", description="Admins, as channel:id pairs: telegram:12345,slack:T0001/U0002"
    )
    min_group: int = Field(
        5, ge=1, le=1000, description="Smallest group any figure or quote may come from."
    )
    templates_dir: Path | None = Field(None, description="Folder of templates overriding ours.")
    timezone: str = Field(
        "UTC", description="Time zone for schedules and digests unless one is given (IANA name)."
    )
    retention_days: int | None = Field(
        None, ge=1, le=36500, description="Blank free-text answers older than this many days."
    )
    digest_cron: str = Field("0 8 * * MON", description="When coordinators get the weekly digest.")
    slack_bot_token: SecretStr | None = Field(
        None, validation_alias="SLACK_BOT_TOKEN", description="Turns on Slack (xoxb-...)."
    )
    slack_signing_secret: SecretStr | None = Field(
        None,
        validation_alias="SLACK_SIGNING_SECRET",
        description="Checks requests come from Slack.",
    )
    slack_app_token: SecretStr | None = Field(
        None, validation_alias="SLACK_APP_TOKEN", description="Turns on Socket Mode (xapp-...)."
    )
    slack_client_id: str | None = Field(
        None, validation_alias="SLACK_CLIENT_ID", description="With the secret: OAuth installs."
    )
    slack_client_secret: SecretStr | None = Field(
        None, validation_alias="SLACK_CLIENT_SECRET", description="With the id: OAuth installs."
    )
    slack_api_url: str | None = Field(
        None, description="Slack Web API base URL (proxies, GovSlack)."
    )
    console: bool = Field(
        False, description="Turns on the coordinators' web console (KT_PUBLIC_URL does too)."
    )
    console_session_hours: float = Field(
        12, gt=0, le=720, description="How long a console sign-in lasts, in hours."
    )
    slack_command: str = Field(
        "/kitchen-table", pattern=r"^/[a-z0-9_-]{1,31}$", description="The app's slash command."
    )

    @property
    def console_enabled(self) -> bool:
        return self.console or self.public_url is not None

    @property
    def console_url(self) -> str:
        """Where the console is: under the public address, else the web server's own."""
        return f"{self.public_url or f'http://{self.host}:{self.port}'}/console"

    @property
    def slack_oauth(self) -> bool:
        return bool(self.slack_client_id and self.slack_client_secret)

    @property
    def slack_enabled(self) -> bool:
        return self.slack_bot_token is not None or self.slack_oauth

    @field_validator("public_url", "telegram_api_url", "slack_api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for a local server)")
        return value.rstrip("/") if value else value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a time zone; use a name such as America/Chicago") from None
        return value

    @field_validator("telegram_bot_username", mode="before")
    @classmethod
    def _no_at(cls, value: object) -> object:
        return value.removeprefix("@") if isinstance(value, str) else value

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not TELEGRAM_TOKEN.match(value.get_secret_value()):
            # Never repeat the value: it may be a real token pasted with a typo.
            raise ValueError(
                "doesn't look like a token from @BotFather (digits, a colon, then letters, "
                "digits, - and _, such as 123456:ABC-def...); copy it again"
            )
        return value

    @field_validator("digest_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from bot.scheduling.schedule_time import trigger

        try:
            trigger(value, "UTC")
        except ValueError as error:
            raise ValueError(
                f"can't be read as a schedule ({error}); use five fields, such as 0 8 * * MON"
            ) from None
        return value

    @field_validator("admins")
    @classmethod
    def _admins(cls, value: str) -> str:
        for entry in filter(None, (part.strip() for part in value.split(","))):
            channel, _, platform_id = entry.partition(":")
            pattern = ADMIN_ID.get(channel)
            if pattern is None or not pattern.match(platform_id):
                raise ValueError(
                    f"{entry[:40]!r} is not channel:id; write telegram:12345 (a Telegram user "
                    "id, digits) or slack:T0001/U0002 (a workspace and a user id), "
                    "separated by commas"
                )
        return value

    @field_validator("data_dir")
    @classmethod
    def _folder(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} is a file, not a folder; name a folder (it is created)")
        return value

    @model_validator(mode="after")
    def _slack_complete(self) -> Settings:
        if self.slack_app_token is not None and not self.slack_enabled:
            raise ValueError(
                "SLACK_APP_TOKEN is set but SLACK_BOT_TOKEN is not: Socket Mode needs both "
                "(the bot token is on the app's OAuth & Permissions page)"
            )
        return self

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        url = value.get_secret_value()
        if not url.startswith(("postgresql://", "postgres://", "sqlite:///")):
            # Never repeat the value: it may hold a password.
            raise ValueError(
                "must start with postgresql:// (for example "
                "postgresql://kitchen@db.example.org/kitchen) or sqlite:///path/to/file.db"
            )
        return value

    @property
    def postgres_url(self) -> str | None:
        """The PostgreSQL database to use, or None for SQLite."""
        url = self.database_url.get_secret_value() if self.database_url else None
        return url if url is not None and url.startswith(("postgresql://", "postgres://")) else None

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError(
                "must be at least 16 characters; generate one with: openssl rand -hex 32"
            )
        return value

    @property
    def database_path(self) -> Path:
        url = self.database_url.get_secret_value() if self.database_url else ""
        if url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///"))
        return self.database or self.data_dir / "kitchen-table.db"


class ConfigError(Exception):
    """Configuration that can't work, explained in a line per setting."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as invalid:
        lines = []
        for error in invalid.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            if not error["loc"]:  # a check across settings names them in its message
                lines.append(message)
                continue
            name = str(error["loc"][0])
            env = name.upper() if name.isupper() else f"KT_{name.upper()}"
            lines.append(f"{env}: {message}")
        raise ConfigError("\n".join(lines)) from None
