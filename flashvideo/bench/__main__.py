"""python -m flashvideo.bench: the same as python -m flashvideo bench."""
from . import main

main()
