"""How training proceeds: the schedule as data (which step, which branch, which epochs) and
the padded, fixed-shape steps over length buckets. The networks are in model.py, the
pseudo-label rules in pseudo_labels.py, the trainers in em_trainer.py."""
