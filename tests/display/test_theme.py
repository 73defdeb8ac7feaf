import pytest

from kiosk.display import theme
from kiosk.errors import DisplayError


@pytest.mark.parametrize("name", sorted(theme.TEXT_PAIRS))
def test_theme_text_pairs_meet_wcag_aa_contrast(name):
    fg, bg = theme.TEXT_PAIRS[name]
    assert theme.contrast_ratio(fg, bg) >= theme.MIN_CONTRAST, name


def test_theme_contrast_ratio_matches_wcag_extremes():
    assert theme.contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert theme.contrast_ratio((118, 118, 118), (255, 255, 255)) == pytest.approx(4.54, abs=0.01)


def test_theme_touch_target_is_two_centimetres_on_the_official_panel():
    metrics = theme.Metrics(800, 480, 7.0)
    assert metrics.target >= 110
    assert metrics.target / metrics.px_per_cm >= 2.0


def test_theme_sizes_follow_the_physical_panel_not_pixels():
    small, large = theme.Metrics(1280, 800, 7.0), theme.Metrics(1280, 800, 13.3)
    assert small.target > large.target
    assert large.target / large.px_per_cm >= 2.0


def test_theme_missing_font_names_the_apt_package(monkeypatch, tmp_path):
    monkeypatch.setattr(theme, "FONT_DIR", tmp_path)
    with pytest.raises(DisplayError, match="fonts-tlwg-loma-otf"):
        theme.font_path("ui_bold")


def test_theme_one_typeface_for_every_role():
    # One Latin alphabet on screen: every role is the same family (bold or not).
    assert {name.split("-")[0].split(".")[0] for name, _ in theme.FONTS.values()} == {"Loma"}


@pytest.mark.parametrize("width,height,diagonal", [(800, 480, 7.0), (1024, 600, 7.0),
                                                   (1280, 800, 10.1)])
def test_theme_no_font_size_under_four_millimetres(width, height, diagonal):
    metrics = theme.Metrics(width, height, diagonal)
    for size in ("display", "title", "heading", "body", "small"):
        assert metrics.font_px(size) / metrics.px_per_cm * 10 >= theme.MIN_TEXT_MM
