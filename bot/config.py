"""Configuration from the environment and `.env`, validated once at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting Kitchen Table reads; the README's configuration table mirrors this."""

    model_config = SettingsConfigDict(
        env_prefix="KT_", env_file=".env", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(Path("data"), description="Where the database and secret live.")
    database: Path | None = Field(
        None, description="SQLite file; default DATA_DIR/kitchen-table.db"
    )
    secret_key: SecretStr | None = Field(
        None, description="Keys pseudonyms and address encryption; generated if unset."
    )
    guides_dir: Path = Field(Path("guides"), description="Folder of YAML guides.")
    default_guide: str = Field("changing-work", description="Guide the terminal opens.")
    max_answer_chars: int = Field(4000, ge=1, le=100_000)
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    telegram_bot_token: SecretStr | None = Field(None, validation_alias="TELEGRAM_BOT_TOKEN")
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
    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    slack_client_id: str | None = Field(None, validation_alias="SLACK_CLIENT_ID")
    slack_client_secret: SecretStr | None = Field(None, validation_alias="SLACK_CLIENT_SECRET")
    slack_api_url: str | None = Field(
        None, description="Slack Web API base URL (proxies, GovSlack)."
    )
    slack_command: str = Field(
        "/kitchen-table", pattern=r"^/[a-z0-9_-]{1,31}$", description="The app's slash command."
    )

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
        return self.database or self.data_dir / "kitchen-table.db"


class ConfigError(Exception):
    """Configuration that can't work, explained in a line per setting."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as invalid:
        lines = []
        for error in invalid.errors():
            name = str(error["loc"][0]) if error["loc"] else "?"
            env = name.upper() if name.isupper() else f"KT_{name.upper()}"
            lines.append(f"{env}: {str(error['msg']).removeprefix('Value error, ')}")
        raise ConfigError("\n".join(lines)) from None
