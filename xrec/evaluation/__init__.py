"""Evaluation protocols on real data: bitext and parallel retrieval, recommendations, topics."""
