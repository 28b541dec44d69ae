"""What evaluate.py builds on: the two official matching protocols (ActivityNet, THUMOS14)
and the checked reading of predictions and ground truth."""
