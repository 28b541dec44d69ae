"""The schedule as data (schedule.py) and the training loop that follows it (run.train)."""
import pytest

from opts import RELEASED_SCHEDULE
from core.errors import InputError
from training.schedule import (Phase, describe_epoch, dry_run_schedule, format_schedule, parse_schedule,
                      run_schedule, schedule_text)


def test_default_schedule_is_the_released_one():
    phases = parse_schedule(RELEASED_SCHEDULE, 4.0)
    assert len(phases) == 65
    assert [p.epoch for p in phases] == list(range(1, 66))
    for p in phases:
        e = p.epoch
        if e <= 10:
            expected = ("M", 1, 1.0)
        elif e <= 20:
            expected = ("E", 1, 1.0)
        elif e <= 30:
            expected = ("M", 2, 4.0)
        else:   # released: E_step = not E_step, starting after an M epoch -> 31 is E
            expected = ("E" if e % 2 == 1 else "M", 2, 4.0)
        assert (p.step, p.stage, p.lr_mult) == expected, p
    assert format_schedule(phases) == "1-10 M1 lr x1 | 11-20 E lr x1 | 21-30 M2 lr x4 | 31-65 alt E/M2 lr x4"


def test_the_released_run_is_110_epochs_classifier_first():
    """C:45,M1:10,E:10,M2:10,alt:35 as data: 45 classifier epochs, then the 65 EM epochs."""
    run = run_schedule(45, RELEASED_SCHEDULE, 4.0)
    assert len(run) == 110
    assert run == parse_schedule("C:45," + RELEASED_SCHEDULE, 4.0)
    assert run[:45] == [Phase(e, "C", 0, 1.0) for e in range(1, 46)]
    assert run[45:] == parse_schedule(RELEASED_SCHEDULE, 4.0)
    names = "".join(p.name + " " for p in run).split()
    assert names == ["C"] * 45 + ["M1"] * 10 + ["E"] * 10 + ["M2"] * 10 + ["E", "M2"] * 17 + ["E"]
    assert [(p.epoch, p.lr_mult) for p in run[44:47]] == [(45, 1.0), (1, 1.0), (2, 1.0)]
    assert [(p.epoch, p.lr_mult) for p in run[-2:]] == [(64, 4.0), (65, 4.0)]
    assert schedule_text(run) == "C:45,M1:10,E:10,M2:10,alt:35"
    assert [p.name for p in run_schedule(2, RELEASED_SCHEDULE, 4.0, em=False)] == ["C", "C"]


def test_each_step_names_its_trained_and_frozen_network():
    c, m, e = (parse_schedule(t, 4.0)[0] for t in ("C:1", "M1:1", "E:1"))
    assert (c.role.trained, c.role.frozen) == ("video classifier", None)
    assert (m.role.trained, m.role.frozen) == ("classifier p", "key-instance network q")
    assert (e.role.trained, e.role.frozen) == ("key-instance network q", "classifier p")
    assert "m_step_targets" in m.role.targets and "e_step_targets" in e.role.targets


@pytest.mark.parametrize("text", ["M1:10,E:10,M2:10,alt:35", "C:3,M1:2,alt:5,M1:1,E:2",
                                  "E:3,M2:1", "M2:2,C:1,alt:4,E:2", "alt:1", "C:2"])
def test_parse_and_text_round_trip(text):
    phases = parse_schedule(text, 2.5)
    assert parse_schedule(schedule_text(phases), 2.5) == phases
    assert schedule_text(parse_schedule(schedule_text(phases), 2.5)) == schedule_text(phases)


def test_schedule_text_names_the_blocks():
    # an E epoch at another learning rate than the M2 after it starts no 'alt' block
    assert schedule_text(parse_schedule("M1:1,E:1,M2:1,E:1,M2:1", 4.0)) == "M1:1,E:1,M2:1,alt:2"
    assert schedule_text(parse_schedule("M1:1,E:1,M2:1,E:1,M2:1", 1.0)) == "M1:1,alt:4"
    assert schedule_text(parse_schedule("M2:3,E:1,M2:1,E:1", 4.0)) == "M2:3,alt:3"


def test_dry_run_keeps_one_epoch_per_phase():
    assert dry_run_schedule("M1:10,E:10,M2:10,alt:35") == "M1:1,E:1,M2:1,alt:2"
    assert dry_run_schedule(" M1:0, alt:1") == "M1:0,alt:1"
    with pytest.raises(InputError, match="cannot read 'X:3'"):
        dry_run_schedule("M1:3,X:3")


def test_epoch_log_lines():
    run = run_schedule(2, "M1:1,E:1,M2:1", 4.0)
    stats = {"loss": 0.5, "positive": 0.25, "lr": 4e-4}
    assert describe_epoch(run[1], run, stats, 1.23) == "classifier epoch   2/2  loss 0.5000  1.2s"
    assert describe_epoch(run[3], run, stats, 2.0) == \
        "epoch   2/3  E   lr 4e-04  loss 0.5000  positive 0.250  2.0s"
    assert describe_epoch(run[4], run, stats, 2.0) == \
        "epoch   3/3  M2  lr 4e-04  loss 0.5000  positive 0.250  2.0s"


@pytest.mark.parametrize("bad", ["", "M3:2", "M1:x", "E10", "alt:-1", "M1:0"])
def test_bad_schedule_is_an_input_error(bad):
    with pytest.raises(InputError):
        parse_schedule(bad, 4.0)


def test_the_classifier_epochs_are_not_set_twice():
    with pytest.raises(InputError, match="--cls-epochs"):
        run_schedule(45, "C:3,M1:1", 4.0)
    assert len(run_schedule(0, "M1:1", 4.0)) == 1


def test_the_loop_trains_each_phase_with_its_trainer_from_where_it_stopped():
    from run import train

    class Trainer:
        def __init__(self, name):
            self.name, self.seen = name, []

        def train_epoch(self, phase):
            self.seen.append(phase)
            return {"loss": float(len(self.seen)), "finite": True}

    video_trainer, em = Trainer("C"), Trainer("EM")
    run = run_schedule(3, "M1:1,E:1,alt:2", 4.0)
    done = [epoch[:3] for epoch in train(run, 2, {"C": video_trainer, "M": em, "E": em})]
    assert video_trainer.seen == [run[2]] and em.seen == run[3:]
    assert [(pos, p.name, s["loss"]) for pos, p, s in done] == \
        [(3, "C", 1.0), (4, "M1", 1.0), (5, "E", 2.0), (6, "E", 3.0), (7, "M2", 4.0)]
