"""``kiosk screenshot``: every screen × language × resolution as PNG files.

The verb loads the config it is given and hands the display its settings; the rendering itself
is :mod:`kiosk.display.screenshot`, which never reads a config.
"""

from kiosk import config
from kiosk.display.screenshot import SAMPLE, SIZES, render_all
from kiosk.display.settings import DisplaySettings


def _size(text):
    try:
        width, height = (int(n) for n in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r}: write WIDTHxHEIGHT, e.g. 800x480") from None
    return width, height


def add_arguments(parser):
    parser.add_argument("--out", default="docs/screens", help="directory for the PNG files")
    parser.add_argument("--sizes", nargs="+", type=_size, metavar="WxH",
                        help="resolutions (default: 800x480 1024x600 1280x800 480x800 600x1024)")
    parser.add_argument("--config", help="kiosk config file whose services and names to show "
                                         "(default: a sample service point)")


def main(args):
    settings = DisplaySettings.from_config(config.load(args.config)) if args.config else SAMPLE
    if args.sizes:
        known = {(w, h): d for w, h, d in SIZES}
        sizes = [(w, h, known.get((w, h), settings.diagonal_in)) for w, h in args.sizes]
    else:
        sizes = SIZES
    written = render_all(settings, args.out, sizes)
    print(f"wrote {len(written)} screenshots to {args.out}")
    return 0
