"""Settings from OUTCALL_* environment variables and an optional TOML file. Built once, in main."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from engine.campaign.callerid import CallerIdPolicy
from engine.errors import ConfigError
from engine.handoff import AgentConfig, QueueConfig
from engine.trunk import Trunk
from gateway.followup import FollowUpRule, WecomTemplate
from gateway.sms_aliyun import DEFAULT_ENDPOINT as SMS_ENDPOINT
from gateway.sms_aliyun import SmsTemplate
from gateway.webhook import WebhookConfig
from gateway.wecom import API_BASE as WECOM_API


class _TomlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            with self.path.open("rb") as f:
                return tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{self.path}: {e}", hint="fix the TOML syntax at that line") from e


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTCALL_", extra="forbid")

    db: str = Field("./outcall.db", description="SQLite path (or a postgresql:// URL later)")
    sip_bind: str = Field("127.0.0.1:0", description="host:port our UA binds (port 0: any free port)")
    sip_proxy: str | None = Field(None, description="outbound proxy / SBC host:port of the default trunk")
    sip_user: str | None = Field(None, description="digest auth username of the default trunk")
    sip_password: SecretStr | None = None
    caller_id: str | None = Field(None, description="caller ID (From user) of the default trunk")
    public_address: str | None = Field(None, description="address put in Contact/Via/SDP behind NAT")
    rtp_ports: tuple[int, int] = (20000, 30000)
    asr: Literal["whisper", "vosk"] = "whisper"
    vosk_model: str | None = Field(None, description="directory of an operator-supplied vosk model")
    vosk_pool: int = Field(
        8,
        ge=0,
        description="warm vosk recognisers kept between utterances (each ~100-150 MB; a cold one decodes "
        "3-5x slower until its graph cache fills)",
    )
    models_dir: str = Field("var/models", description="where `make models` put the speech models")
    tts: Literal["kokoro", "espeak"] = "kokoro"
    mqtt_url: str | None = Field(None, description="mqtt://host:port for outcome publishing")
    webhooks: list[WebhookConfig] = Field(
        default_factory=list,
        description="outcome webhooks: OUTCALL_WEBHOOKS as a JSON list, or [[webhooks]] in the TOML "
        "(url, secret or secret_env, name, filters)",
    )
    outbox_max_attempts: int = Field(12, ge=1, description="delivery attempts before a row is dead")
    # follow-up after calls (gateway/followup.py). Secrets: environment variables only, never the repo.
    follow_up_rules: list[FollowUpRule] = Field(
        default_factory=list, description="[[follow_up_rules]]: campaigns/dialplans/grades/tags -> sms/wecom"
    )
    follow_up_tz: str = Field("Asia/Shanghai", description="the day of the per-number daily caps")
    sms_access_key_id: str | None = Field(None, description="Aliyun AccessKey ID; SMS is on when set")
    sms_access_key_secret: SecretStr | None = None
    sms_sign_name: str | None = Field(None, description="approved SMS sign name (签名)")
    sms_templates: dict[str, SmsTemplate] = Field(
        default_factory=dict, description="template name -> {template_code, params, sign_name}"
    )
    sms_endpoint: str = SMS_ENDPOINT
    sms_region: str = "cn-hangzhou"
    sms_rate_per_s: float = Field(10.0, gt=0, description="SendSms calls per second")
    sms_daily_cap: int = Field(1, ge=1, description="SMS per number per day")
    wecom_corp_id: str | None = None
    wecom_secret: SecretStr | None = Field(None, description="secret of the app with 客户联系 permission")
    wecom_api_base: str = WECOM_API
    wecom_robot_keys: dict[str, SecretStr] = Field(
        default_factory=dict, description="robot name -> group robot webhook key"
    )
    wecom_templates: dict[str, WecomTemplate] = Field(
        default_factory=dict, description="template name -> {robot, text, welcome}"
    )
    wecom_link_url: str | None = Field(None, description="customer-acquisition link url (获客链接)")
    wecom_daily_cap: int = Field(1, ge=1, description="WeCom follow-ups per number per day")
    wecom_callback_token: SecretStr | None = Field(None, description="callback Token (接收事件服务器)")
    wecom_callback_aes_key: SecretStr | None = Field(None, description="callback EncodingAESKey (43 chars)")
    log_level: str = "INFO"
    recordings_dir: str = Field("var/recordings", description="where call recordings (stereo FLAC) are kept")
    recording_retention_days: float = Field(
        180, gt=0, description="recordings older than this are deleted (`outcall recordings purge`, serve)"
    )
    log_mask_phones: bool = Field(True, description="mask callee numbers in logs (138****5678)")
    api_token: SecretStr | None = Field(
        None, description="an admin bearer token for the HTTP API (more: `outcall token create`)"
    )
    dialplans_dir: str = Field(
        "var/dialplans", description="where dialplans edited through the API are saved (shadow shipped ones)"
    )
    trunks: list[Trunk] = Field(default_factory=list, description="several trunks, from the TOML file")
    caller_ids: CallerIdPolicy = Field(
        default_factory=CallerIdPolicy,
        description="caller-ID pool health: daily caps, quarantine thresholds ([caller_ids] in the TOML)",
    )
    agents: list[AgentConfig] = Field(
        default_factory=list,
        description="human agents for transfers ([[agents]] in the TOML: id, uri, skills, wrap_up_s)",
    )
    queues: list[QueueConfig] = Field(
        default_factory=list,
        description="transfer queues named by dialplan transfer nodes ([[queues]]: name, agents or uri, "
        "skills, hours, timeout_s, hold_prompt, whisper)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = os.environ.get("OUTCALL_CONFIG")
        toml = _TomlSource(settings_cls, Path(path) if path else Path("outcall.toml"))
        return (init_settings, env_settings, toml)

    def all_trunks(self) -> list[Trunk]:
        """Trunks from the TOML, else one `default` trunk from the flat OUTCALL_SIP_* variables."""
        if self.trunks:
            return list(self.trunks)
        return [
            Trunk(
                name="default",
                proxy=self.sip_proxy,
                auth_user=self.sip_user,
                password=self.sip_password,
                caller_ids=[self.caller_id] if self.caller_id else [],
            )
        ]

    def trunk(self, name: str | None) -> Trunk:
        trunks = self.all_trunks()
        if name is None:
            return trunks[0]
        for t in trunks:
            if t.name == name:
                return t
        raise ConfigError(
            f"no trunk named {name!r}",
            hint=f"configured trunks: {', '.join(t.name for t in trunks)} (define [[trunks]] in the TOML)",
        )


def load_settings(**overrides: Any) -> Settings:
    """Build settings; a bad value raises ConfigError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            name = "_".join(str(x) for x in err["loc"]).upper()
            lines.append(f"OUTCALL_{name}: {err['msg']}")
        raise ConfigError(
            "invalid settings:\n  " + "\n  ".join(lines), hint="fix the variable or TOML"
        ) from e
