"""What a run leaves to look at: the loss CSV (webui columns), a loss-curve PNG drawn with
PIL, `settings.json`, and optional TensorBoard scalars."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

from ..fileio import atomic_path

CSV_NAME = "hypernetwork_loss.csv"
CSV_COLUMNS = ("step", "epoch", "epoch_step", "loss", "learn_rate")
PLOT_NAME = "loss.png"
SETTINGS_NAME = "settings.json"


def write_json(path, data: dict) -> Path:
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


class LossLog:
    """`hypernetwork_loss.csv`: one row every `every` steps. On resume into the same run
    folder the rows after the resumed step are dropped first, so the file never holds two
    histories."""

    def __init__(self, path, every: int, steps_per_epoch: int, start_step: int):
        self.path = Path(path) if path is not None else None  # None: history only (other processes)
        self.every = every
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.history: list[tuple[int, float]] = []
        if self.path is not None:
            self.history = self._keep_until(start_step)

    def _keep_until(self, step: int) -> list[tuple[int, float]]:
        """Rewrite the file with only its rows up to `step`; returns them."""
        kept, history = [], []
        if self.path.exists():
            with open(self.path, newline="", encoding="utf-8") as stream:
                for row in csv.DictReader(stream):
                    try:
                        row_step, loss = int(row["step"]), float(row["loss"])
                    except (KeyError, TypeError, ValueError):
                        continue
                    if row_step <= step:
                        kept.append(row)
                        history.append((row_step, loss))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)
        with atomic_path(self.path) as temporary:
            temporary.write_text(buffer.getvalue(), encoding="utf-8")
        return history

    def rewind(self, step: int) -> None:
        """Forget the rows after `step`: a run that went back to earlier weights."""
        self.history = [(s, loss) for s, loss in self.history if s <= step]
        if self.path is not None:
            self._keep_until(step)

    def add(self, step: int, loss: float, learning_rate: float) -> None:
        self.history.append((step, loss))
        if self.path is None or not self.every or step % self.every:
            return
        epoch, epoch_step = divmod(step - 1, self.steps_per_epoch)
        with open(self.path, "a", newline="", encoding="utf-8") as stream:
            csv.writer(stream, lineterminator="\n").writerow([step, epoch, epoch_step + 1, f"{loss:.7f}", f"{learning_rate:g}"])


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _moving_average(values: Sequence[float], window: int) -> list[float]:
    averaged, total = [], 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        averaged.append(total / min(index + 1, window))
    return averaged


def draw_loss_plot(history: Sequence[tuple[int, float]], path, title: str = "loss", size=(800, 450)) -> Path | None:
    """Loss per step (light) and its moving average (dark), on plain axes."""
    from PIL import Image, ImageDraw, ImageFont

    points = [(step, loss) for step, loss in history if math.isfinite(loss)]
    if not points:
        return None
    width, height = size
    left, right, top, bottom = 70, 20, 35, 45
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    steps = [s for s, _ in points]
    losses = [v for _, v in points]
    window = 1 if len(losses) < 4 else min(100, max(2, len(losses) // 10))
    smooth = _moving_average(losses, window)
    x_low, x_high = min(steps), max(max(steps), min(steps) + 1)
    y_low, y_high = min(losses), max(losses)
    if y_high - y_low < 1e-12:
        y_low, y_high = y_low - 0.5 * abs(y_low or 1), y_high + 0.5 * abs(y_high or 1)

    def x_of(step):
        return left + (step - x_low) / (x_high - x_low) * (width - left - right)

    def y_of(value):
        return height - bottom - (value - y_low) / (y_high - y_low) * (height - top - bottom)

    draw.rectangle([left, top, width - right, height - bottom], outline=(120, 120, 120))
    for tick in _nice_ticks(y_low, y_high):
        y = y_of(tick)
        draw.line([left - 4, y, width - right, y], fill=(230, 230, 230))
        draw.text((4, y - 6), f"{tick:.4g}", fill="black", font=font)
    for tick in _nice_ticks(x_low, x_high):
        x = x_of(tick)
        draw.line([x, height - bottom, x, height - bottom + 4], fill=(120, 120, 120))
        draw.text((x - 10, height - bottom + 8), f"{int(tick)}", fill="black", font=font)
    draw.text((left, 10), f"{title}: last {losses[-1]:.5f}; dark line: moving average over {window} steps, "
              f"last {smooth[-1]:.5f}", fill="black", font=font)
    draw.text((width - right - 40, height - 18), "step", fill="black", font=font)
    if len(points) > 1:
        draw.line([(x_of(s), y_of(v)) for s, v in points], fill=(170, 200, 235), width=1)
        draw.line([(x_of(s), y_of(v)) for s, v in zip(steps, smooth)], fill=(20, 70, 160), width=2)
    else:
        x, y = x_of(steps[0]), y_of(losses[0])
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(20, 70, 160))
    path = Path(path)
    with atomic_path(path, suffix=".png") as temporary:
        image.save(temporary, format="PNG")
    return path


def open_tensorboard(folder):
    """A SummaryWriter, or (None, why not) when TensorBoard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        return None, f"TensorBoard logging is off: {error} (pip install tensorboard)"
    return SummaryWriter(log_dir=str(folder)), None
