"""A Textual app's screen as a PNG (Pillow and a monospace TrueType font; no browser, no SVG converter): each cell
drawn with its colours, the same content `App.export_screenshot` writes as SVG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.color import Color
from rich.segment import Segment
from rich.style import Style

from townlet.errors import UsageError

FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/TTF/DejaVuSansMono.ttf",
    "/System/Library/Fonts/Menlo.ttc",
)
BLOCKS = "▁▂▃▄▅▆▇█"
FOREGROUND = (224, 224, 224)
BACKGROUND = (18, 18, 18)


def _rgb(color: Color | None, default: tuple[int, int, int]) -> tuple[int, int, int]:
    if color is None or color.is_default:
        return default
    triplet = color.get_truecolor()
    return (triplet.red, triplet.green, triplet.blue)


def screen_lines(app: Any) -> list[list[Segment]]:
    """The app's current screen as lines of styled segments (what `export_screenshot` renders)."""
    width, height = app.size
    console = app.console  # renders to segments here; nothing is written
    options = console.options.update_dimensions(width, height)
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens, simplify=True)
    segments = (seg for seg in console.render(update, options) if not seg.control)
    return [list(line) for line in Segment.split_lines(segments)][:height]


def save_png(app: Any, path: Path, *, font_size: int = 15) -> Path:
    """Write the app's screen to `path` as a PNG; UsageError when no monospace font is found."""
    from PIL import Image, ImageDraw, ImageFont

    font_path = next((f for f in FONTS if Path(f).exists()), None)
    if font_path is None:
        raise UsageError(f"no monospace font for the PNG screenshot (looked for {', '.join(FONTS)})")
    font = ImageFont.truetype(font_path, font_size)
    _, top, _, bottom = font.getbbox("M")
    cw = int(font.getlength("M"))
    ch = int(font_size * 1.25)
    width, height = app.size
    image = Image.new("RGB", (width * cw, height * ch), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for y, line in enumerate(screen_lines(app)):
        x = 0
        for seg in line:
            style = seg.style or Style()
            fg = _rgb(style.color, FOREGROUND)
            bg = _rgb(style.bgcolor, BACKGROUND)
            if style.reverse:
                fg, bg = bg, fg
            if style.dim:
                fg = tuple((c + b) // 2 for c, b in zip(fg, bg, strict=True))  # type: ignore[assignment]
            for char in seg.text:
                box = (x * cw, y * ch, (x + 1) * cw, (y + 1) * ch)
                draw.rectangle(box, fill=bg)
                if char in BLOCKS:  # block elements fill their share of the cell, bottom up
                    share = (BLOCKS.index(char) + 1) / len(BLOCKS)
                    draw.rectangle((box[0], box[3] - int(ch * share), box[2] - 1, box[3] - 1), fill=fg)
                elif char.strip():
                    draw.text((x * cw, y * ch + (ch - (bottom - top)) // 2 - top), char, font=font, fill=fg)
                x += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format="PNG", optimize=True)
    tmp.replace(path)
    return path
