"""Pictures of a cluster for ``render()``: ``"ansi"`` (text) and ``"rgb_array"`` (an HxWx3 uint8 image
drawn with NumPy, no plotting library).

The image shows what a router sees (``RoutingCore.view()``): a header with the simulated time, the
router queue and the episode's progress, then one band per instance with three bars:

* **KV** (blue): KV blocks used / the instance's capacity;
* **RUN** (green): running requests (the batch) / ``max_num_seqs``;
* **WAIT** (orange): waiting requests, on a scale of ``max_num_seqs`` (a longer queue fills the bar
  and turns it red);

each with its count in digits on the right. The width is fixed (320 px); the height grows with the
number of instances (40 px each).
"""

from __future__ import annotations

import numpy as np

WIDTH = 320
HEADER_PX = 30
BAND_PX = 40
BAR_PX = 8
LABEL_PX = 50      # left margin: the instance number and the bar names
BAR_LEN = 180      # pixels of a full bar
SCALE = 2          # the 3x5 font drawn at 2x: 6x10 pixels per character

BACKGROUND = (250, 250, 250)
INK = (30, 30, 30)
TRACK = (225, 225, 225)
KV_COLOR = (52, 101, 164)
RUN_COLOR = (78, 154, 6)
WAIT_COLOR = (245, 121, 0)
OVERFLOW_COLOR = (204, 0, 0)
QUEUE_COLOR = (117, 80, 123)
DONE_COLOR = (136, 138, 133)

# a 3x5 bitmap font: each glyph is 5 rows of 3 bits (MSB left)
_FONT = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), ".": (0, 0, 0, 0, 2), "/": (1, 1, 2, 4, 4),
    ":": (0, 2, 0, 2, 0), "=": (0, 7, 0, 7, 0), " ": (0, 0, 0, 0, 0), "-": (0, 0, 7, 0, 0),
    "A": (2, 5, 7, 5, 5), "D": (6, 5, 5, 5, 6), "E": (7, 4, 6, 4, 7), "I": (7, 2, 2, 2, 7),
    "K": (5, 5, 6, 5, 5), "N": (6, 5, 5, 5, 5), "O": (7, 5, 5, 5, 7), "Q": (7, 5, 5, 7, 1),
    "R": (6, 5, 6, 5, 5), "S": (7, 4, 7, 1, 7), "T": (7, 2, 2, 2, 2), "U": (5, 5, 5, 5, 7),
    "V": (5, 5, 5, 5, 2), "W": (5, 5, 7, 7, 5), "C": (7, 4, 4, 4, 7), "M": (5, 7, 7, 5, 5),
    "P": (7, 5, 7, 4, 4), "L": (4, 4, 4, 4, 7), "G": (7, 4, 5, 5, 7), "%": (5, 1, 2, 4, 5),
}


def _text(img: np.ndarray, x: int, y: int, text: str, color=INK) -> None:
    for k, ch in enumerate(text.upper()):
        rows = _FONT.get(ch, _FONT[" "])
        x0 = x + k * 4 * SCALE
        for r, bits in enumerate(rows):
            for c in range(3):
                if bits >> (2 - c) & 1:
                    y1, x1 = y + r * SCALE, x0 + c * SCALE
                    img[y1:y1 + SCALE, x1:x1 + SCALE] = color


def _bar(img: np.ndarray, x: int, y: int, fraction: float, color) -> None:
    img[y:y + BAR_PX, x:x + BAR_LEN] = TRACK
    f = min(max(float(fraction), 0.0), 1.0)
    img[y:y + BAR_PX, x:x + int(round(f * BAR_LEN))] = color


def render_rgb(core, b: int) -> np.ndarray:
    """Cluster ``b`` of a RoutingCore as a (30 + 40 N) x 320 x 3 uint8 image (see the module docstring)."""
    v = core.view()
    n = core.N
    img = np.empty((HEADER_PX + BAND_PX * n, WIDTH, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    total = max(int(core.n_req[b]), 1)
    queue = int(v.queue_len[b])
    _text(img, 4, 3, f"T {core.t[b]:.2f}S  Q {queue}  DONE {int(core.completed[b])}/{int(core.n_req[b])}")
    # progress: completed (grey) and router queue (purple), both over the episode's requests
    img[18:24, 4:WIDTH - 4] = TRACK
    img[18:24, 4:4 + int(round((WIDTH - 8) * int(core.completed[b]) / total))] = DONE_COLOR
    img[25:28, 4:4 + int(round((WIDTH - 8) * min(queue / total, 1.0)))] = QUEUE_COLOR
    x_bar = LABEL_PX
    for m in range(n):
        y = HEADER_PX + BAND_PX * m
        img[y:y + 1, :] = TRACK  # separator
        seqs = int(core.max_num_seqs[m])
        kv_used, kv_cap = int(v.kv_blocks_used[b, m]), int(v.kv_capacity_blocks[m])
        running, waiting = int(v.num_running[b, m]), int(v.num_waiting[b, m])
        _text(img, 2, y + 4, str(m))
        rows = (("KV", kv_used / max(kv_cap, 1), KV_COLOR, f"{100 * kv_used / max(kv_cap, 1):.0f}"),
                ("RUN", running / max(seqs, 1), RUN_COLOR, str(running)),
                ("WAIT", waiting / max(seqs, 1), OVERFLOW_COLOR if waiting > seqs else WAIT_COLOR, str(waiting)))
        for k, (label, fraction, color, value) in enumerate(rows):
            yy = y + 5 + k * 12
            _text(img, 14, yy - 1, label)
            _bar(img, x_bar, yy, fraction, color)
            _text(img, x_bar + BAR_LEN + 6, yy - 1, (value + ("%" if label == "KV" else ""))[:12])
    return img


def render_ansi(core, b: int) -> str:
    """A text snapshot of one cluster: router queue and per-instance state."""
    v = core.view()
    lines = [f"t={core.t[b]:.3f}s  router queue={int(v.queue_len[b])}  arrived={int(core.n_arrived[b])}/"
             f"{int(core.n_req[b])}  completed={int(core.completed[b])}"]
    for m in range(core.N):
        lines.append(f"  instance {m}: running {int(v.num_running[b, m]):>3}  waiting {int(v.num_waiting[b, m]):>4}  "
                     f"KV {int(v.kv_blocks_used[b, m]):>6}/{int(v.kv_capacity_blocks[m])}  "
                     f"pending prefill {int(v.pending_prefill_tokens[b, m]):>6} tok  impact {v.impact[b, m]:+.2f}")
    return "\n".join(lines)
