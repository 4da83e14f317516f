"""Recipes of chapter 3 (adversarial training)."""

from __future__ import annotations

from .trainers import Recipe

RECIPES: dict[str, Recipe] = {}
