"""Recipes of chapter 4 (regularization)."""

from __future__ import annotations

from .trainers import Recipe

RECIPES: dict[str, Recipe] = {}
