"""UI benchmark: scene build and frame times per screen, start-up to idle, idle CPU, memory.

Runs on SDL's dummy video driver here (software surfaces, no vsync); the Pi's KMS/DRM figure
is to be added from hardware. ``run(quick=False)`` returns a markdown section;
``python -m benchmarks.ui`` prints it.
"""

import dataclasses
import os
import statistics
import sys
import tempfile
import time

TARGET_REDRAW_MS = 2.0
TARGET_IDLE_CPU = 5.0
TARGET_RSS_MB = 100.0


def _rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _ms(samples):
    return statistics.median(samples) * 1000


def run(quick=False):
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    from kiosk.display.screens import View
    from kiosk.display.screenshot import SAMPLE, sample_states
    from kiosk.display.window import Display

    repeats = 5 if quick else 30
    idle_s = 1.0 if quick else 5.0
    settings = dataclasses.replace(SAMPLE, fullscreen=False,
                                   prompt_cache_dir=tempfile.mkdtemp(prefix="kiosk-bench-"))

    started = time.perf_counter()
    display = Display(settings, headless=True)
    first_state = sample_states()[0][1]
    display.show(first_state)
    startup_ms = (time.perf_counter() - started) * 1000
    window = pygame.display.get_surface()

    rows = []
    worst_redraw = 0.0
    for name, state in sample_states():
        view = View.of(state, portal_url="https://citizeninfo.go.th/portal?sp=X&t=benchmark")
        build, redraw, steady = [], [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            scene = display.renderer.scene(view)
            build.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            window.blit(scene.surface, (0, 0))
            pygame.display.flip()
            redraw.append(time.perf_counter() - t0)
        display.show(state)
        for _ in range(repeats * 10):
            t0 = time.perf_counter()
            display.show(state)
            display.poll_events()
            steady.append(time.perf_counter() - t0)
        worst_redraw = max(worst_redraw, _ms(redraw))
        rows.append(f"| {name} | {_ms(build):.1f} | {_ms(redraw):.2f} | {_ms(steady):.3f} |")

    # Idle: the runner's loop shape, show + poll at the configured frame rate.
    idle = first_state
    display.show(idle)
    clock = pygame.time.Clock()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - wall0 < idle_s:
        display.show(idle)
        display.poll_events()
        clock.tick(settings.fps)
    idle_cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100
    rss = _rss_mb()
    display.close()

    def verdict(ok):
        return "ok" if ok else "**over target**"

    lines = [
        "## UI (pygame-ce, SDL dummy video driver, 800×480)",
        "",
        f"Python {sys.version.split()[0]}, pygame-ce {pygame.version.ver}, "
        f"{'quick' if quick else 'full'} run. Scene build happens once when a screen appears; "
        "a full redraw is blitting the finished scene and flipping; steady state is one "
        "`show()` + `poll_events()` turn with nothing changed.",
        "",
        "| screen | scene build ms | full redraw ms | steady turn ms |",
        "|---|---|---|---|",
        *rows,
        "",
        "| measure | value | target | |",
        "|---|---|---|---|",
        f"| start-up to idle screen (empty prompt cache: espeak-ng included) | "
        f"{startup_ms:.0f} ms | | |",
        f"| worst full redraw | {worst_redraw:.2f} ms | ≤ {TARGET_REDRAW_MS} ms | "
        f"{verdict(worst_redraw <= TARGET_REDRAW_MS)} |",
        f"| idle CPU at {settings.fps} fps | {idle_cpu:.1f} % of one core | "
        f"< {TARGET_IDLE_CPU} % | {verdict(idle_cpu < TARGET_IDLE_CPU)} |",
        f"| resident memory | {rss:.0f} MB | ≤ {TARGET_RSS_MB:.0f} MB | "
        f"{verdict(rss <= TARGET_RSS_MB)} |",
        "",
        "Raspberry Pi (KMS/DRM driver): to be measured on hardware.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
