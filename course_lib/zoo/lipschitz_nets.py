"""Recipes of chapter 5 part 2 (Lipschitz-constrained networks)."""

from __future__ import annotations

from .trainers import Recipe

RECIPES: dict[str, Recipe] = {}
