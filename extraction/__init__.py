"""From videos to I3D snippet features in the W-TALC convention: frames decoded and resampled
to 25 fps, optical flow (TV-L1 or DIS), the Inception-I3D network, and the extraction record
(extraction.json). `extract.py` is the command; `detect.py --video` builds on it."""
