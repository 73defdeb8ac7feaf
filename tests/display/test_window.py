from kiosk import flow, visit
from kiosk.display.settings import DisplaySettings
from kiosk.display.window import Display
from kiosk.flow import Screen, State


def test_window_takes_the_real_config_and_shows_its_services(make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    cfg = make_config(tmp_path, audio={"enabled": False})
    settings = DisplaySettings.from_config(cfg)
    assert settings.services and settings.services[0].id == cfg.services[0].id
    assert settings.prompt_cache_dir.parent == tmp_path
    display = Display(cfg, headless=True)
    try:
        display.show(State(screen=Screen.CHOOSE_SERVICE))
        chosen = set(display.scene.choices)
        assert chosen <= {flow.ServiceChosen(s.id) for s in cfg.services} | {
            flow.ServiceChosen(visit.OTHER_SERVICE)}
        assert display.screen_state() == "on"
    finally:
        display.close()


def test_window_reconfigure_redraws_with_the_new_names(make_display, display_settings):
    import dataclasses

    display, _ = make_display()
    display.show(State())
    before = display.scene
    display.reconfigure(dataclasses.replace(display_settings, name_th="สำนักงานเขตปทุมวัน"))
    display.show(State())
    assert display.scene is not before
    assert display.settings.name_th == "สำนักงานเขตปทุมวัน"
