"""Spoken prompts and short feedback tones through pygame.mixer.

A prompt per screen, in the visit's language: the agency's own recording when it ships one
(``audio.prompts_dir/<lang>/<screen>.wav`` or ``.ogg``), else a prompt synthesised ahead of time
with espeak-ng's Thai and English voices into a cache under the data directory (never at the
moment of speaking: espeak-ng takes a noticeable fraction of a second on a Pi). Tones are
generated in memory. A kiosk without a sound device runs silently: that is logged once at info
level and is not an error.
"""

import array
import logging
import math
import shutil
import subprocess
from pathlib import Path

import pygame

from kiosk.display import wording
from kiosk.flow import LANGUAGES

log = logging.getLogger(__name__)

#: espeak-ng voice per kiosk language.
VOICES = {"th": "th", "en": "en-gb"}

#: Beep kind -> (frequency Hz, length s) pairs played in sequence.
TONES = {
    "tap": ((880, 0.05),),
    "card": ((660, 0.08), (990, 0.10)),
    "error": ((330, 0.18), (262, 0.25)),
    "reminder": ((784, 0.12), (0, 0.08), (784, 0.12)),
}


def synthesise_prompts(cache_dir, *, prompts=tuple(wording.PROMPTS), languages=LANGUAGES):
    """Write ``cache_dir/<lang>/<prompt id>.wav`` with espeak-ng for every missing or stale
    prompt (ids: :data:`kiosk.display.wording.PROMPTS`).

    A ``.txt`` beside each WAV holds the words it says, so a wording change makes a new file,
    and only then: a start with a warm cache runs espeak-ng not at all. Prompts with the same
    words share one synthesis. Returns the paths written; without espeak-ng it writes nothing
    and says so once.
    """
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        log.info("espeak-ng is not installed (apt install espeak-ng): no synthesised prompts")
        return []
    written = []
    for language in languages:
        folder = Path(cache_dir) / language
        made = {}  # words -> a WAV of this run that says them
        for key in prompts:
            words = wording.prompt(key, language)
            wav, said = folder / f"{key}.wav", folder / f"{key}.txt"
            try:
                if wav.is_file() and said.is_file() and said.read_text(encoding="utf-8") == words:
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                part = wav.with_suffix(".part")  # the player never sees half a file
                if words in made:
                    shutil.copyfile(made[words], part)
                else:
                    subprocess.run([espeak, "-v", VOICES[language], "-s", "150", "-w", str(part),
                                    words], check=True, capture_output=True, timeout=30)
                part.replace(wav)
                said.write_text(words, encoding="utf-8")
            except (OSError, subprocess.SubprocessError) as exc:
                # A missing voice or a full disk costs one prompt, never the kiosk's start.
                log.warning("no spoken prompt for %s (%s): %s", key, language, exc)
                continue
            made[words] = wav
            written.append(wav)
    return written


class Audio:
    """Prompts and tones; every method is a no-op when sound is off or there is no device."""

    def __init__(self, *, enabled, volume, prompts_dir=None, cache_dir=None):
        self.prompts_dir = Path(prompts_dir) if prompts_dir else None
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.volume = max(0.0, min(1.0, float(volume)))
        self.is_on = False
        self._sounds = {}
        self._tones = {}
        if not enabled:
            return
        try:
            pygame.mixer.init()
        except pygame.error as exc:
            log.info("no sound device (%s): the kiosk runs silently", exc)
            return
        self.is_on = True
        self._channel = pygame.mixer.Channel(0)
        self._tones = {kind: self._tone(parts) for kind, parts in TONES.items()}

    def prepare(self):
        """Synthesise the prompts the agency did not record (run at start-up, before idle)."""
        if self.is_on and self.cache_dir is not None:
            synthesise_prompts(self.cache_dir)

    def prompt_path(self, key, language):
        """The file that says prompt ``key`` (a Screen or a :func:`wording.prompt_id`) in
        ``language``: the agency's, else the cache's."""
        for folder, suffixes in ((self.prompts_dir, (".wav", ".ogg")), (self.cache_dir, (".wav",))):
            if folder is None:
                continue
            for suffix in suffixes:
                path = folder / language / f"{key}{suffix}"
                if path.is_file():
                    return path
        return None

    def play_prompt(self, key, language):
        """Say prompt ``key`` (a Screen or a :func:`wording.prompt_id`), cutting off any
        prompt still playing."""
        if not self.is_on:
            return None
        return self._say(key, language)

    def remind(self, language):
        """Say the card reminder, unless a prompt is still being said (a screen's question is
        not cut off for it: the reminder comes again). True when it is said."""
        if not self.is_on or self._channel.get_busy():
            return False
        return self._say(wording.CARD_REMINDER, language) is not None

    def _say(self, key, language):
        path = self.prompt_path(key, language)
        if path is None:
            return None
        sound = self._sounds.get(path)
        if sound is None:
            try:
                sound = self._sounds[path] = pygame.mixer.Sound(str(path))
            except pygame.error as exc:
                log.warning("prompt %s cannot be played (%s): re-record it as WAV or OGG",
                            path, exc)
                self._sounds[path] = sound = False
        if sound:
            sound.set_volume(self.volume)
            self._channel.play(sound)
        return path if sound else None

    def play(self, kind):
        """A short tone: ``tap``, ``card``, ``error`` or ``reminder``."""
        tone = self._tones.get(kind)
        if tone is not None:
            tone.set_volume(self.volume)
            tone.play()

    def close(self):
        if self.is_on:
            pygame.mixer.quit()
            self.is_on = False

    def _tone(self, parts):
        rate, size, channels = pygame.mixer.get_init()
        if abs(size) != 16:
            log.info("mixer sample size %s is not 16-bit: feedback tones are off", size)
            return None
        samples = array.array("h")
        for frequency, seconds in parts:
            count = int(rate * seconds)
            fade = max(1, int(rate * 0.005))  # 5 ms ramps: no clicks
            for i in range(count):
                envelope = min(1.0, i / fade, (count - i) / fade)
                value = math.sin(2 * math.pi * frequency * i / rate) if frequency else 0.0
                samples.extend([int(12000 * envelope * value)] * channels)
        return pygame.mixer.Sound(buffer=samples.tobytes())
