"""What the display needs from the kiosk config, gathered in one frozen value.

The screens, the screenshot verb and the tests build this directly; :meth:`from_config` is the
one place that knows the config's section and key names (see docs/architecture.md).
"""

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServiceInfo:
    """One service button: its id and its name in each language."""

    id: str
    name_th: str
    name_en: str


@dataclass(frozen=True)
class DisplaySettings:
    width: int = 800
    height: int = 480
    diagonal_in: float = 7.0
    fullscreen: bool = True
    debug: bool = False
    fps: int = 30
    blank_after_min: float = 10.0
    office_hours_start: str = "08:00"
    office_hours_end: str = "17:00"
    office_days: tuple = ("mon", "tue", "wed", "thu", "fri")
    timezone: str = "Asia/Bangkok"
    backlight_dir: Path | None = None
    audio_enabled: bool = True
    volume: float = 0.8
    prompts_dir: Path | None = None
    #: espeak-ng prompts are made here ahead of time (under the data directory).
    prompt_cache_dir: Path | None = None
    portal_url: str = "https://citizeninfo.go.th/portal"
    service_point_id: str = ""
    name_th: str = ""
    name_en: str = ""
    services: tuple = field(default_factory=tuple)
    allow_rating_without_card: bool = False
    #: One rating per card per service in this many minutes: the already-rated screen says so.
    repeat_window_min: int = 30
    #: How long the confirm screen offers "change my answer" (its countdown starts here).
    confirm_s: float = 6.0
    #: Where the card goes and which way its chip faces, for the idle screen's picture.
    card_slot: str = "below"
    chip_facing: str = "up"
    #: Physical choice buttons fitted (kiosk.gpio): no page shows more choices than that.
    choice_buttons: int = 0
    #: Demo windows pass unbound keys (``i``/``r`` to insert/remove the emulated card) through.
    is_demo: bool = False

    @classmethod
    def from_config(cls, cfg):
        d, a, k = cfg.display, cfg.audio, cfg.kiosk
        data_dir = Path(cfg.storage.data_dir)
        time_section = getattr(cfg, "time", None)
        return cls(
            width=int(d.width), height=int(d.height), diagonal_in=float(d.diagonal_in),
            fullscreen=bool(d.fullscreen), debug=bool(d.debug), fps=int(d.fps),
            blank_after_min=float(d.blank_after_min),
            office_hours_start=str(d.office_hours_start), office_hours_end=str(d.office_hours_end),
            office_days=tuple(d.office_days),
            timezone=getattr(time_section, "timezone", None) or "Asia/Bangkok",
            backlight_dir=Path(d.backlight_dir) if d.backlight_dir else None,
            audio_enabled=bool(a.enabled), volume=float(a.volume),
            prompts_dir=Path(a.prompts_dir) if a.prompts_dir else None,
            prompt_cache_dir=data_dir / "prompts",
            portal_url=cfg.portal.url, service_point_id=k.service_point_id,
            name_th=k.name_th, name_en=k.name_en,
            services=tuple(ServiceInfo(s.id, s.name_th, s.name_en)
                           for s in cfg.services),
            allow_rating_without_card=bool(cfg.flow.allow_rating_without_card),
            repeat_window_min=int(cfg.flow.repeat_window_min),
            confirm_s=float(cfg.flow.confirm_s),
            card_slot=d.card_slot, chip_facing=d.chip_facing,
            choice_buttons=len(cfg.gpio.rating_buttons),
            is_demo=getattr(k, "mode", "production") == "demo",
        )
