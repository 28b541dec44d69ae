"""The report of a run: error analysis after DETAD, figures, the HTML page, published
numbers to set beside ours, and statistics over seeds."""
