"""The build folder: `build.py` writes one atomically, `folder.py` loads it for every consumer."""
