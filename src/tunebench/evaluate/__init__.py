"""Batched generation and scoring of predictions."""
