"""EM training: the trainers of one epoch, EMTrainer (the M- and E-steps: one loss,
step_loss, on each step's targets) and ClassifierTrainer (the video classifier); the
phases are schedule.py's.

Each phase trains only its own branch with its own Adam optimizer, so the frozen
branch never moves (one shared Adam, as released, keeps moving a frozen branch
through its momentum). The frozen branch's output cannot change during a block of
consecutive epochs of the same phase, so it is computed once per block.
"""
import torch
from tqdm import tqdm

from training.buckets import BucketedInputs, padded_step
from readers.features import stream_pair
from model import bce_loss, compute_dtype, operand, video_classifier_loss
from pseudo_labels import step_targets
from training.schedule import EM_STEPS, STEPS


# ---------------------------------------------------------------------------
# Losses: model.bce_loss (per stream and class, mean BCE over a video's snippets, summed)
# ---------------------------------------------------------------------------

def step_loss(out_rgb, out_flow, targets, mask):
    """The loss of a step on padded batches: the trained branch's outputs of both streams
    and its targets (B, T, O) (O = K for p in the M-step, 1 for q in the E-step); mask (B, T)."""
    return bce_loss(torch.stack([out_rgb, out_flow]), targets, mask)


# ---------------------------------------------------------------------------
# Loops
# ---------------------------------------------------------------------------

def bucketed_batches(lengths, batch_size, generator, pool=32):
    """Video indices in batches of similar length, in a random order (a new one every call):
    shuffle, sort each pool of `pool` batches' worth of videos by length, cut it into
    batches, shuffle the batches. Every video once; little padding."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    out = []
    for p in range(0, len(order), pool * batch_size):
        chunk = sorted(order[p:p + pool * batch_size], key=lambda i: lengths[i])
        out += [chunk[s:s + batch_size] for s in range(0, len(chunk), batch_size)]
    return [out[j] for j in torch.randperm(len(out), generator=generator).tolist()]


def padded_batch(inputs, chosen, lengths, dtype=torch.float32, length=None):
    """Videos `chosen` side by side, from features already where the steps read them (no
    copy from the host): xs (2, B, T, D) zero-padded to T = `length` (default: the longest
    chosen), mask (B, T) bool, labels (B, K), on the inputs' device."""
    T = length or max(lengths[i] for i in chosen)
    first = inputs.get(chosen[0], dtype)
    xs = first.new_zeros(2, len(chosen), T, first.shape[-1])         # (2, B, T, D)
    for b, i in enumerate(chosen):
        xs[:, b, :lengths[i]] = inputs.get(i, dtype)
    real = torch.tensor([lengths[i] for i in chosen]).to(xs.device, non_blocking=True)
    mask = torch.arange(T, device=xs.device)[None] < real[:, None]      # (B, T)
    return xs, mask, torch.stack([inputs.labels[i] for i in chosen])


def _pad_stack(tensors, length):
    """Stack (T_i, ...) tensors into (B, length, ...) with zero padding."""
    out = tensors[0].new_zeros((len(tensors), length) + tuple(tensors[0].shape[1:]))
    for b, t in enumerate(tensors):
        out[b, :t.shape[0]] = t
    return out


def autocast(device, enabled):
    """bfloat16 autocast for the network's forward pass when --amp (losses stay float32)."""
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                          enabled=enabled)


def progress(iterable, total, desc, enabled):
    """tqdm bar, shown only on a terminal and when not --quiet."""
    return tqdm(iterable, total=total, desc=desc, leave=False, disable=None if enabled else True)


class VideoInputs:
    """Per video, its (2, T, D) float32 features on the device. On a GPU they are copied
    there once; on the CPU they are views of the features in RAM (or read from disk when
    streamed) at every access. amp: a bfloat16 copy (contiguous) is also held, made once,
    for the EM steps' products (get(i, torch.bfloat16)). `labels[i]`: the (K,) label on the
    device."""

    def __init__(self, videos, device, amp=False):
        self.videos = videos
        self.held = self.low = None
        if torch.device(device).type != "cpu":
            self.held = [stream_pair(v.features).to(device) for v in videos]
        if amp:
            self.low = [operand(self[i], torch.bfloat16) for i in range(len(videos))]
        self.labels = [v.labels.to(device) for v in videos]

    def __getitem__(self, i):
        return self.held[i] if self.held is not None else stream_pair(self.videos[i].features)

    def get(self, i, dtype=torch.float32):
        """Video i's features in `dtype` when held so (the bfloat16 copy), else float32."""
        return self.low[i] if dtype == torch.bfloat16 and self.low is not None else self[i]

    def subset(self, indices):
        """The inputs of videos[indices], sharing what is held (no copy)."""
        sub = VideoInputs([self.videos[i] for i in indices], "cpu")
        sub.labels = [self.labels[i] for i in indices]
        if self.held is not None:
            sub.held = [self.held[i] for i in indices]
        if self.low is not None:
            sub.low = [self.low[i] for i in indices]
        return sub


class EpochStats:
    """An epoch's sums of the loss and of the positive snippets, kept on the device (no host
    read inside an epoch) and read once at its end, together with a device-side check that
    training stayed finite: the sums and the networks' weights. A NaN output makes NaN
    gradients and a NaN in Adam's update stays in the weights, so a non-finite output seen in
    any step of the epoch is still seen in the weights at its end."""

    def __init__(self, device):
        self.sums = torch.zeros(2, device=device)        # loss sum, positive snippets

    def add(self, loss, positive=None):
        """+= a step's loss (0-d) and its positive snippets (0-d; None: the loss only)."""
        if positive is None:
            self.sums[:1] += loss.detach()
        else:
            self.sums += torch.stack([loss.detach(), positive])

    def read(self, params, videos, snippets):
        """dict(loss=mean loss per video, positive=fraction of real snippets that are
        positive targets, finite=whether the sums and every parameter are finite): one read."""
        finite = torch.stack([torch.isfinite(p).all() for p in params] +
                             [torch.isfinite(self.sums).all()]).all()
        loss, pos, ok = torch.cat([self.sums, finite[None].float()]).tolist()
        return {"loss": loss / max(videos, 1), "positive": pos / max(snippets, 1),
                "finite": ok == 1.0}


def adam(params, lr, capturable=False):
    """Adam with the fused kernel (one pass over the parameters instead of several).
    capturable: its step count and learning rate are tensors on the parameters' device,
    read by the kernel: no host value in the update, so it can run inside a CUDA graph.
    The learning rate is held in the precision the device's kernel computes with (the CPU's
    float64: the update is then the plain one's bit for bit; CUDA's kernel reads a float32
    tensor, untested here)."""
    if capturable:
        params = list(params)
        device = params[0].device
        dtype = torch.float64 if device.type == "cpu" else torch.float32
        lr = torch.tensor(lr, dtype=dtype, device=device)
    return torch.optim.Adam(params, lr=lr, fused=True, capturable=capturable)


def set_lr(opt, lr):
    """Every group's learning rate to lr (in place where it is a tensor: capturable)."""
    for g in opt.param_groups:
        if torch.is_tensor(g["lr"]):
            g["lr"].fill_(lr)
        else:
            g["lr"] = lr


class EMTrainer:
    """Trains an EMMIL model on the labelled training videos, one epoch (Phase) at a time."""

    def __init__(self, model, dataset, lr, gamma, batch_size, device, seed, log=print,
                 amp=False, show_progress=False, inputs=None, buckets=None):
        """inputs: a VideoInputs of dataset.videos to share (else one is made). buckets:
        bucket lengths (buckets.bucket_lengths) to train with fixed-shape padded steps
        (buckets.padded_step, one video per step); None: the unpadded one-video step."""
        keep = [i for i, v in enumerate(dataset.videos) if v.labels.sum() > 0.1]
        if len(keep) < len(dataset.videos):
            log(f"EM: {len(dataset.videos) - len(keep)} training videos without labels are "
                f"skipped (as released)")
        self.dataset = type(dataset)([dataset.videos[i] for i in keep], dataset.snippet_seconds)
        self.model, self.lr, self.gamma = model, lr, gamma
        self.batch_size, self.device, self.log = batch_size, device, log
        self.amp, self.show_progress = amp, show_progress
        self.dtype = compute_dtype(amp)
        # one video per step (the default): the hand-written step (model.BranchBCE); several
        # videos per step: autograd on padded batches
        self.fast = batch_size == 1
        self.inputs = (inputs if inputs is not None
                       else VideoInputs(dataset.videos, device, amp)).subset(keep)
        self.padded = None
        if buckets is not None:
            if batch_size != 1:
                raise ValueError("padded steps train one video per step (batch size 1)")
            lengths = [v.num_snippets for v in self.dataset.videos]
            self.padded = BucketedInputs(self.inputs, lengths, buckets)
            self.real_snippets = sum(lengths)
        self.opt = {step: adam(model.weights(STEPS[step].branch), lr,
                               capturable=self.padded is not None) for step in EM_STEPS}
        self.generator = torch.Generator().manual_seed(seed)
        # frozen-branch outputs by the step that uses them: 'M' -> q, 'E' -> p. Not saved in
        # checkpoints: recomputed from the same weights, they are bit-identical.
        self.cache = {}

    def state_dict(self):
        return {"opt_M": self.opt["M"].state_dict(), "opt_E": self.opt["E"].state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.opt["M"].load_state_dict(state["opt_M"])
        self.opt["E"].load_state_dict(state["opt_E"])
        self.generator.set_state(state["generator"])
        self.cache = {}

    def train_epoch(self, phase):
        """One epoch of one phase; returns dict(loss=mean loss per video, positive=fraction
        of real snippets that are positive targets, lr, finite: see EpochStats)."""
        set_lr(self.opt[phase.step], self.lr * phase.lr_mult)
        frozen = self._frozen(phase)
        epoch = (self._padded_epoch if self.padded is not None
                 else self._fast_epoch if self.fast else self._batched_epoch)
        sums = EpochStats(self.device)
        stats = sums.read(self.model.parameters(), *epoch(phase, frozen, sums))
        # this step's branch moved: the other step's frozen outputs are stale
        self.cache.pop("E" if phase.step == "M" else "M", None)
        stats["lr"] = self.lr * phase.lr_mult
        return stats

    def _frozen(self, phase):
        """Per video, the frozen branch's stream-averaged output, q (T, 1) for an M2 step,
        p (T, K) for an E step (None for M1): computed once per block of epochs. With padded
        steps, per bucket (N_b, L_b, O) for its videos side by side, one forward a bucket."""
        step = phase.step
        if (step == "E" or phase.stage == 2) and step not in self.cache:
            scores = self.model.branch_scorer(phase.role.frozen_branch, self.dtype)
            if self.padded is not None:
                self.cache[step] = [scores(xs) for xs in self.padded.xs]
            else:
                self.cache[step] = [scores(self.inputs.get(i, self.dtype))
                                    for i in range(len(self.dataset))]
        return self.cache.get(step)

    def _padded_epoch(self, phase, frozen, stats):
        """One video per step, each padded to its bucket (buckets.padded_step)."""
        step, opt = phase.step, self.opt[phase.step]
        order = torch.randperm(len(self.dataset), generator=self.generator).tolist()
        for i in progress(order, len(order), f"epoch {phase.epoch} {step}", self.show_progress):
            b, j = self.padded.slot[i]
            opt.zero_grad(set_to_none=True)
            padded_step(self.model, opt, phase.role.branch, step, phase.stage, self.padded.video(i),
                        None if frozen is None else frozen[b][j], self.gamma, self.dtype,
                        stats.sums)
        return len(order), self.real_snippets

    def _fast_epoch(self, phase, frozen, stats):
        """One video per step with the hand-written step (model.BranchBCE)."""
        step, opt = phase.step, self.opt[phase.step]
        order = torch.randperm(len(self.dataset), generator=self.generator).tolist()
        n_snip = 0
        for i in progress(order, len(order), f"epoch {phase.epoch} {step}", self.show_progress):
            xs = self.inputs.get(i, self.dtype)                       # (2, T, D)
            T = xs.shape[1]
            labels = self.inputs.labels[i][None]                      # (1, K)
            target, positive = step_targets(step, phase.stage, labels, None,   # no padding
                                            None if frozen is None else frozen[i][None],
                                            self.gamma, T)
            # target (1, T, O); M1: (1, 1, K), one row for all T
            opt.zero_grad(set_to_none=True)
            loss = self.model.branch_loss(phase.role.branch, xs, target[0], self.dtype)
            loss.backward()
            opt.step()
            stats.add(loss, positive)
            n_snip += T
        return len(order), n_snip

    def _batched_epoch(self, phase, frozen, stats):
        """Padded batches of videos through autograd (--batch-size > 1), from the features
        held where the steps run."""
        model, dev, step = self.model, self.device, phase.step
        opt = self.opt[step]
        model.train()
        n_videos, n_snip = 0, 0
        lengths = [v.num_snippets for v in self.dataset.videos]
        chosen = bucketed_batches(lengths, self.batch_size, self.generator)
        for indices in progress(chosen, len(chosen), f"epoch {phase.epoch} {step}",
                                self.show_progress):
            xs, mask, labels = padded_batch(self.inputs, indices, lengths, self.dtype)
            T = mask.shape[1]
            opt.zero_grad(set_to_none=True)
            held = (None if frozen is None
                    else _pad_stack([frozen[i] for i in indices], T))          # (B, T, O')
            targets, positive = step_targets(step, phase.stage, labels, mask, held,
                                             self.gamma, T)                    # (B, T, O)
            with autocast(dev, self.amp):                                      # (B, T, O)
                out_rgb, out_flow = model.branch_streams(phase.role.branch, xs[0], xs[1])
            loss = step_loss(out_rgb.float(), out_flow.float(), targets, mask)
            loss.backward()
            opt.step()
            stats.add(loss, positive)
            n_videos += len(indices)
            n_snip += sum(lengths[i] for i in indices)
        return n_videos, n_snip


class ClassifierTrainer:
    """UntrimmedNet-style video classifier: minimise the NLL of the L1-normalised video label.
    One video per step (the default) uses the hand-written step (model.ClassifierNLL)."""

    def __init__(self, model, dataset, lr, batch_size, device, seed, amp=False,
                 show_progress=False, inputs=None):
        """inputs: a VideoInputs of dataset.videos to share (else one is made)."""
        self.model, self.dataset, self.batch_size, self.device = model, dataset, batch_size, device
        self.amp, self.show_progress = amp, show_progress
        self.fast = batch_size == 1
        self.opt = adam(model.parameters(), lr)
        self.inputs = inputs if inputs is not None else VideoInputs(dataset.videos, device)
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self):
        return {"opt": self.opt.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.opt.load_state_dict(state["opt"])
        self.generator.set_state(state["generator"])

    def train_epoch(self, phase):
        """One epoch (a 'C' Phase); returns dict(loss=mean loss per labelled video, finite:
        see EpochStats)."""
        desc = f"classifier epoch {phase.epoch}"
        stats = EpochStats(self.device)
        epoch = self._fast_epoch if self.fast else self._batched_epoch
        out = stats.read(self.model.parameters(), epoch(desc, stats), 0)
        return {"loss": out["loss"], "finite": out["finite"]}

    def _fast_epoch(self, desc, stats):
        n = 0
        order = torch.randperm(len(self.dataset), generator=self.generator).tolist()
        for i in progress(order, len(order), desc, self.show_progress):
            if self.dataset.videos[i].labels.sum() <= 0:         # no label: nothing to learn
                continue
            self.opt.zero_grad(set_to_none=True)
            loss = self.model.video_loss(self.inputs[i], self.inputs.labels[i])
            loss.backward()
            self.opt.step()
            stats.add(loss)
            n += 1
        return n

    def _batched_epoch(self, desc, stats):
        """Padded batches through autograd (--batch-size > 1), from the features held where
        the steps run; which videos have a label is known on the host."""
        n = 0
        self.model.train()
        lengths = [v.num_snippets for v in self.dataset.videos]
        chosen = bucketed_batches(lengths, self.batch_size, self.generator)
        for indices in progress(chosen, len(chosen), desc, self.show_progress):
            keep = [i for i in indices if self.dataset.videos[i].labels.sum() > 0]
            if not keep:
                continue
            # padded to the longest of the whole batch, as before the unlabelled were left out
            xs, mask, labels = padded_batch(self.inputs, keep, lengths,
                                            length=max(lengths[i] for i in indices))
            self.opt.zero_grad(set_to_none=True)
            with autocast(self.device, self.amp):
                scores = self.model(xs[0], xs[1], mask)                         # (B, K)
            loss = video_classifier_loss(scores.float(), labels)
            loss.backward()
            self.opt.step()
            stats.add(loss)
            n += len(keep)
        return n
