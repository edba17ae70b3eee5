"""Speed measurements against named peers, side by side in one run."""
