#!/usr/bin/env python3
"""Write kamailio/prompts/press-1.wav: the prompt a twin leg's confirmation plays to whoever
answers the mobile (two rising beeps, then quiet; rtpengine repeats it until 1 is pressed or
the window closes). 8 kHz 16-bit mono PCM, what rtpengine's player reads and transcodes to
the call's codec. A voice recording of the same format can replace it."""
from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "kamailio" / "prompts" / "press-1.wav"
RATE = 8000


def tone(hz: float, seconds: float, level: float = 0.35) -> list[int]:
    n = int(RATE * seconds)
    ramp = int(RATE * 0.01)             # 10 ms fades: no clicks
    return [int(32767 * level * min(1.0, i / ramp, (n - i) / ramp) *
                math.sin(2 * math.pi * hz * i / RATE)) for i in range(n)]


def quiet(seconds: float) -> list[int]:
    return [0] * int(RATE * seconds)


def main() -> None:
    samples = tone(660, 0.18) + quiet(0.08) + tone(880, 0.18) + quiet(0.8)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(OUT), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    print(f"wrote {OUT} ({len(samples) / RATE:.2f} s)")


if __name__ == "__main__":
    main()
