"""Recipes of chapter 2 (naive defenses)."""

from __future__ import annotations

from .trainers import Recipe

RECIPES: dict[str, Recipe] = {}
